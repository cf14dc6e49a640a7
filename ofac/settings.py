"""The schema of `.ofa` blocks: every key, its type, default, range and meaning.

The checker types every `key = value` against this table; the runtime reads the resolved
values.  Adding a setting is adding a row here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # int | float | bool | str | path | paths | choice | names | strings | floats
    doc: str
    default: object = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class BlockSchema:
    kind: str
    doc: str
    settings: tuple[Setting, ...]
    labelled: bool = False  # `task NAME { }`
    repeatable: bool = False
    children: tuple[str, ...] = ()  # nested block kinds

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)


METRICS = ("auto", "accuracy", "exact_match", "bleu", "cider", "rouge", "iou_acc", "map", "map50", "wer",
           "sql_execution", "psnr", "ssim", "mcd", "mpjpe", "matthews_corrcoef", "vqa_score", "f_measure",
           "solved_acc", "cell_acc", "none")

GENERATE = BlockSchema("generate", "decoding settings for validation and inference", (
    Setting("beam", "int", "beam size (1 is greedy)", lo=1),
    Setting("max_len", "int", "longest output in tokens", lo=1),
    Setting("min_len", "int", "shortest output in tokens", lo=0),
    Setting("len_penalty", "float", "length penalty of beam scores"),
    Setting("no_repeat_ngram_size", "int", "block repeated n-grams of this size (0: off)", lo=0),
    Setting("sampling", "bool", "sample instead of searching"),
    Setting("top_k", "int", "sample from the k most likely tokens (0: all)", lo=0),
    Setting("top_p", "float", "sample from the smallest set with this probability mass", lo=0.0, hi=1.0),
    Setting("temperature", "float", "softmax temperature", lo=0.0),
    Setting("steps", "int", "diffusion sampling steps (MOTION outputs; DDIM)", lo=1, hi=1000),
    Setting("guidance", "float", "classifier-free guidance weight w: (1 + w) cond - w uncond (MOTION outputs; "
            "0: none)", lo=0.0),
    Setting("length", "int", "frames of a motion generated without a reference (default: the training clips' "
            "median)", lo=1),
))

TASK = BlockSchema("task", "one instruction and its data", (
    Setting("train", "paths", "training data files (JSONL, CSV, TSV, Parquet)", default=()),
    Setting("valid", "paths", "validation data files", default=()),
    Setting("test", "paths", "test data files", default=()),
    Setting("sample_ratios", "floats", "per dataset of OFASys' `train = \"a,b ||| c\"`: the share of its rows drawn "
            "each epoch (< 1 subsamples, > 1 repeats)", default=(), lo=0.0),
    Setting("micro_batch_size", "int", "examples per forward pass", default=8, lo=1),
    Setting("update_freq", "int", "micro-batches accumulated per update", default=1, lo=1),
    Setting("weight", "float", "loss weight, and sampling weight under `mixing = weighted`", default=1.0, lo=0.0),
    Setting("metric", "choice", "validation metric (`auto`: chosen from the target)", default="auto",
            choices=METRICS),
    Setting("references", "str", "a column of each validation row's reference answers for the metric (a list, "
            "`&&`-separated text, or OFASys' VQA `conf|!+answer&&...`; default: the target itself)"),
    Setting("positive", "str", "the positive label of `metric = f_measure`"),
    Setting("label_smoothing", "float", "label smoothing of the cross-entropy loss", default=0.1, lo=0.0, hi=0.999),
    Setting("ctc_weight", "float", "text_phone targets: the weight of the encoder's CTC loss over the target's "
            "phonemes beside the decoder's cross-entropy (OFASys' speech_to_text_loss; 0 turns it off)",
            default=1.0, lo=0.0),
    Setting("scst", "bool", "TEXT targets: train by self-critical sequence training (OFA's second captioning "
            "stage): the CIDEr-D of sampled answers against the greedy answer's, instead of the cross-entropy",
            default=False),
    Setting("scst_samples", "int", "SCST: answers sampled per example each update", default=5, lo=2, hi=64),
    Setting("decoder_plain_with_loss", "bool", "train on decoder plain text too (OFASys switch)", default=False),
    Setting("answers", "strings", "candidate answers of a closed_set target (default: the training targets)",
            default=()),
    Setting("columns", "names", "column names of a headerless TSV/CSV file, in order", default=()),
    Setting("on_error", "choice", "what a bad data row does", default="fail", choices=("fail", "skip")),
    Setting("max_source_length", "int", "truncate the encoder token sequence", default=512, lo=1),
    Setting("max_target_length", "int", "truncate the decoder token sequence", default=128, lo=1),
    Setting("bvh_header", "str", "a BVH file whose skeleton .npy/.npz MOTION cells use (relative to the data "
            "file, as media paths are)"),
    Setting("drop_prompt", "float", "MOTION targets: the chance a training row loses its prompt (classifier-free "
            "guidance)", default=0.1, lo=0.0, hi=1.0),
    Setting("diffusion_weighting", "choice", "MOTION targets: the x0 loss weight per noise level (`snr`: "
            "OFASys' sqrt(SNR + 1); `none`: uniform)", default="snr", choices=("snr", "none")),
), labelled=True, repeatable=True, children=("generate",))

# The model sizes `preset =` names; a model block's own d_model, heads, ... override them.
PRESETS = {
    "tiny": dict(d_model=256, ffn_dim=1024, encoder_layers=4, decoder_layers=4, heads=4),
    "small": dict(d_model=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8),
    "base": dict(d_model=768, ffn_dim=3072, encoder_layers=6, decoder_layers=6, heads=12),
}
SIZE_KEYS = ("d_model", "ffn_dim", "encoder_layers", "decoder_layers", "heads", "dropout", "image_size", "patch_size",
             "video_frames", "video_stem")


def model_sizes(model: dict) -> dict:
    """A model block's sizes: its preset's, then each size the block sets itself."""
    sizes = dict(PRESETS[model.get("preset") or "tiny"])
    sizes.update((k, model[k]) for k in SIZE_KEYS if model.get(k) is not None)
    return sizes


@dataclass(frozen=True)
class SizeConflict:
    at: tuple[str, ...]  # the settings at fault, the one a diagnostic should point at first
    message: str
    label: str
    help: str
    adaptor: str | None = None  # the adaptor whose needs the sizes break


def uses_resnet_stem(adaptor: str, video_stem: str | None) -> bool:
    """Whether an encoder adaptor embeds images with image_resnet's stem (it halves down to
    patch_size, so the sizes must allow it): image_resnet itself, and video_image_sequence under
    `video_stem = resnet`."""
    return adaptor == "image_resnet" or (adaptor == "video_image_sequence" and video_stem == "resnet")


def size_conflicts(d_model: int, heads: int, image_size: int, patch_size: int, resnet: bool) -> list[SizeConflict]:
    """Model sizes that are each in range but do not fit together.  `ofac check` reports each
    at its setting; ModelConfig raises the first (a model built from Python)."""
    out = []
    if d_model % heads:
        out.append(SizeConflict(("heads", "d_model", "preset"),
                                f"d_model = {d_model} is not divisible by heads = {heads}", "not a divisor",
                                "choose heads that divide d_model (each head gets d_model / heads features)"))
    if image_size % patch_size:
        near = min((k for k in range(1, image_size + 1) if image_size % k == 0),
                   key=lambda k: (abs(k - patch_size), k))
        out.append(SizeConflict(("patch_size", "image_size"),
                                f"image_size = {image_size} is not a multiple of patch_size = {patch_size}",
                                "not a divisor", f"choose a patch_size that divides image_size, e.g. {near}"))
    elif resnet and (patch_size < 2 or patch_size & (patch_size - 1)):
        out.append(SizeConflict(("patch_size",), f"adaptor image_resnet halves images down to patch_size = "
                                f"{patch_size}: not a power of two", "not 2, 4, 8, 16, ...",
                                "use a power-of-two patch_size, or the default image adaptor (image_patch)",
                                "image_resnet"))
    return out


MODEL = BlockSchema("model", "the generalist encoder-decoder", (
    Setting("preset", "choice", "size preset", default="tiny", choices=("tiny", "small", "base")),
    Setting("d_model", "int", "hidden width (overrides the preset)", lo=8),
    Setting("ffn_dim", "int", "feed-forward width", lo=8),
    Setting("encoder_layers", "int", "encoder depth", lo=1),
    Setting("decoder_layers", "int", "decoder depth", lo=1),
    Setting("heads", "int", "attention heads", lo=1),
    Setting("dropout", "float", "dropout probability", lo=0.0, hi=0.999),
    Setting("positions", "choice", "position encoding", default="learned", choices=("learned", "rotary")),
    Setting("vocab_size", "int", "BPE vocabulary size of the trained tokenizer", default=8000, lo=300),
    Setting("tokenizer", "path", "use this tokenizer.json instead of training one"),
    Setting("image_size", "int", "image side after resizing (pixels)", default=256, lo=16),
    Setting("patch_size", "int", "image patch side (pixels)", default=16, lo=1),
    Setting("box_bins", "int", "quantization bins per box coordinate", default=1000, lo=2),
    Setting("audio_sample_rate", "int", "audio is resampled to this rate (Hz)", default=16000, lo=1000),
    Setting("video_frames", "int", "frames sampled per video", default=8, lo=1),
    Setting("video_stem", "choice", "how video_image_sequence embeds each frame: `patch` (a linear patch "
            "embedding, OFASys') or `resnet` (image_resnet's convolutional stem)", default="patch",
            choices=("patch", "resnet")),
))

TRAIN = BlockSchema("train", "the optimization of all tasks together", (
    Setting("steps", "int", "number of updates", default=1000, lo=1),
    Setting("lr", "float", "peak learning rate", default=3e-4, lo=0.0),
    Setting("warmup", "float", "warm-up: a fraction of steps (< 1) or a number of steps", default=0.06, lo=0.0),
    Setting("schedule", "choice", "decay after warm-up", default="cosine",
            choices=("cosine", "polynomial", "constant")),
    Setting("weight_decay", "float", "AdamW weight decay", default=0.01, lo=0.0),
    Setting("clip_norm", "float", "gradient clipping norm (0: off)", default=1.0, lo=0.0),
    Setting("precision", "choice", "`auto`: bf16 autocast where the hardware has it, else fp32",
            default="auto", choices=("auto", "fp32", "bf16")),
    Setting("mixing", "choice", "how tasks share updates", default="all",
            choices=("all", "weighted", "temperature")),
    Setting("temperature", "float", "T of `mixing = temperature` (size^(1/T))", default=2.0, lo=0.0),
    Setting("loss_mean", "choice", "`tokens`: an update's loss is the mean over all its target tokens (OFASys); "
            "`tasks`: the mean over its tasks of each task's mean token loss, so a task with short targets "
            "(a box, a class) weighs as much as one with long ones", default="tokens", choices=("tokens", "tasks")),
    Setting("bucket_by_length", "bool", "group rows of similar length into micro-batches (less padding)",
            default=False),
    Setting("seed", "int", "random seed", default=1),
    Setting("init", "path", "a run directory whose weights start this run (checkpoints/best, else the latest) and "
            "whose tokenizer is this run's vocabulary; the model sizes must match (a second stage such as SCST)"),
    Setting("ema", "float", "EMA decay of the weights (0: off)", default=0.0, lo=0.0, hi=1.0),
    Setting("eval_every", "int", "validate every N updates", default=500, lo=1),
    Setting("save_every", "int", "checkpoint every N updates", default=500, lo=1),
    Setting("keep_last", "int", "checkpoints kept", default=2, lo=1),
    Setting("patience", "int", "stop after N validations without improvement (0: never)", default=0, lo=0),
    Setting("out", "path", "run directory", default="runs/ofac"),
    Setting("device", "choice", "where to train", default="auto", choices=("auto", "cpu", "cuda")),
    Setting("parallel", "choice", "how `--nproc` processes share the model: `ddp` replicates it, `fsdp` shards "
            "it (FSDP2)", default="ddp", choices=("ddp", "fsdp")),
    Setting("num_workers", "int", "data loader workers per task", default=0, lo=0),
))

IMAGE_TOKENIZER = BlockSchema("image_tokenizer", "the image tokenizer (a VQ-VAE) that turns target images into codes: "
                              "trained by ofac on the run's images before the main run, unless `path` names one", (
    Setting("codes", "int", "codebook entries", default=256, lo=2, hi=16384),
    Setting("grid", "int", "codes per side of an image (grid x grid codes)", default=8, lo=1, hi=64),
    Setting("image_size", "int", "side of the images it encodes and generates (pixels)", default=32, lo=8),
    Setting("steps", "int", "training updates", default=1500, lo=1),
    Setting("lr", "float", "learning rate (Adam)", default=2e-3, lo=0.0),
    Setting("batch_size", "int", "images per update", default=64, lo=1),
    Setting("path", "path", "a trained tokenizer to use instead (a run's tokenizers/image folder)"),
))


def tokenizer_conflicts(image_size: int, grid: int) -> list[SizeConflict]:
    """Image tokenizer sizes that do not fit together: one stride-2 stage per halving."""
    factor = image_size // grid
    if image_size % grid or factor < 2 or factor & (factor - 1):
        good = [g for g in (image_size // 2 ** k for k in range(1, 8)) if g >= 1 and image_size % g == 0]
        return [SizeConflict(("grid", "image_size"), f"image_size = {image_size} into grid = {grid}: image_size / grid "
                             "must be a power of two of at least 2", "not a halving",
                             f"choose grid among {', '.join(map(str, good[:4]))}")]
    return []


EXPORT = BlockSchema("export", "what `ofac export RUN_DIR` writes by default (its options win)", (
    Setting("opset", "int", "ONNX opset: 23 (attention as one node, ONNX Runtime >= 1.23) or 18 (any runtime)",
            default=23, lo=18),
    Setting("tasks", "names", "export only these tasks (default: all)", default=()),
    Setting("out", "path", "the export folder, relative to the run directory", default="onnx"),
))

BLOCKS: dict[str, BlockSchema] = {b.kind: b for b in (TASK, MODEL, TRAIN, EXPORT, GENERATE, IMAGE_TOKENIZER)}
TOP_LEVEL = ("task", "model", "train", "export", "image_tokenizer")


def coerce(schema: BlockSchema, name: str, value):
    """A Python value for setting `name` of `schema`, type- and range-checked as the task-file
    checker does; ValueError with a fix otherwise (the Python API's counterpart of E0034-E0036)."""
    from .names import closest

    s = schema.setting(name)
    if s is None:
        guess = closest(name, [x.name for x in schema.settings])
        raise ValueError(f"unknown {schema.kind} setting `{name}`" + (f"; did you mean `{guess}`?" if guess else ""))
    if s.kind in ("paths", "names", "strings"):
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if s.kind == "floats":
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or (s.lo is not None and v < s.lo)
               for v in values):
            raise ValueError(f"`{name}` expects numbers >= {s.lo}, got {value!r}")
        return tuple(float(v) for v in values)
    if s.kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"`{name}` expects True or False, got {value!r}")
    if s.kind == "choice" and value not in s.choices:
        raise ValueError(f"`{name}` cannot be {value!r}; choose one of: {', '.join(s.choices)}")
    if s.kind in ("int", "float"):
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float))
        if wrong_type or (s.kind == "int" and not isinstance(value, int)):
            raise ValueError(f"`{name}` expects {'an integer' if s.kind == 'int' else 'a number'}, got {value!r}")
        if (s.lo is not None and value < s.lo) or (s.hi is not None and value > s.hi):
            raise ValueError(f"`{name}` = {value} is out of range [{s.lo}, {s.hi}]")
    return value
