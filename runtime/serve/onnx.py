"""The exported graphs run by ONNX Runtime on numpy arrays, and the numpy batch they take.

`OrtModel` offers what the search calls (`encode`, `cross_cache`, `decode_step`, `vocab_size`)
with numpy in and out; `collate` packs samples of the IR executor into an `ArrayBatch` laid out
as the PyTorch collate lays out its tensors (same padding, same pixel normalization, bit for
bit).  No torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ofac import ir
from ofac.diagnostics import Diagnostic, Severity
from ofac.modalities import ADAPTORS

from ..data.targets import TokenBatch, batch_targets
from ..errors import RunError
from ..exec.sample import by_adaptor
from ..store.files import CheckpointError, read_json
from ..vocab.tokenizer import PAD

FORMAT = "ofac-onnx-1"


def takes_lengths(adaptor: str) -> bool:
    """Whether an encoder adaptor's graph input comes with a lengths input (tokens, frames)."""
    return ADAPTORS[adaptor].variable_length


class ExportError(RunError):
    def __init__(self, message: str, help: str = "", path: Path | None = None):
        self.diagnostic = Diagnostic("E0119", Severity.ERROR, message, None, help=help,
                                     file=str(path) if path else None)
        super().__init__(message + (f"\n  help: {help}" if help else ""))


def encoder_inputs(task: ir.TaskIR) -> tuple[str, ...]:
    """The adaptors of a task's encoder segments, in order (its encoder graph's signature)."""
    program = task.programs[0]
    return tuple(program.ops[a].name for a in program.only("encoder").args)


def encoder_graph(adaptors: tuple[str, ...]) -> str:
    return "encoder_" + "-".join(adaptors)


def decoder_graphs(head: str) -> tuple[str, str]:
    """The names of an output head's two decoder graphs (first call, with past)."""
    return ("decoder", "decoder_with_past") if head == "tokens" else (f"decoder_{head}", f"decoder_{head}_with_past")


# ------------------------------------------------------------------------------ batches

@dataclass
class ArrayBatch:
    """What the search reads: per-adaptor inputs (stacked over the batch), their lengths, each
    example's layout, the output head's targets (the token head's: the decoder's forced start and
    prefix lengths), and per-example meta."""

    tasks: list[str]
    inputs: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    layout: list[list[tuple[str, int]]]
    head: str
    decoder: TokenBatch  # numpy arrays
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tasks)


def _pad(items: list[np.ndarray], value) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(x) for x in items], dtype=np.int64)
    out = np.full((len(items), int(lengths.max()), *items[0].shape[1:]), value, dtype=items[0].dtype)
    for i, x in enumerate(items):
        out[i, :len(x)] = x
    return out, lengths


def _normalize(pixels: np.ndarray, segs) -> np.ndarray:
    """uint8 [N, (T,) 3, H, W] -> float32 (x/255 - mean)/std per row, as `preprocess.image.normalize`
    computes it (x * (1 / (255 std)) + (-mean / std), float32), with infilling borders zeroed."""
    shape = (1,) * (pixels.ndim - 4) + (3, 1, 1)
    out = np.empty(pixels.shape, dtype=np.float32)
    for row, seg in enumerate(segs):
        mean, std = (np.asarray(v, dtype=np.float32) for v in seg.norm)
        scale, shift = np.float32(1.0) / (np.float32(255.0) * std), -mean / std
        out[row] = pixels[row].astype(np.float32) * scale.reshape(shape) + shift.reshape(shape)
        b = seg.mask_border
        if b:
            out[row, ..., b:out.shape[-2] - b, b:out.shape[-1] - b] = 0
    return out


def collate(samples: list) -> ArrayBatch:
    segs, layout = by_adaptor(samples)
    inputs, lengths = {}, {}
    for adaptor, items in segs.items():
        data = [np.asarray(s.data) for s in items]
        if len({x.shape[1:] for x in data}) > 1:
            raise ValueError(f"inputs of adaptor {adaptor} have different shapes: tasks sharing an adaptor "
                             "must share its preprocessing size")
        if data[0].dtype == np.int64:
            inputs[adaptor], lengths[adaptor] = _pad(data, PAD)
        elif data[0].dtype == np.float32 and data[0].ndim == 2:  # audio frames [T, D]
            inputs[adaptor], lengths[adaptor] = _pad(data, 0.0)
        elif items[0].norm is not None:
            inputs[adaptor] = _normalize(np.stack(data), items)
        else:
            inputs[adaptor] = np.stack(data)
    head, targets = batch_targets(samples)
    return ArrayBatch([s.task for s in samples], inputs, lengths, layout, head, targets, [s.meta for s in samples])


# ------------------------------------------------------------------------------ the graphs

def _version(text: str) -> tuple[int, ...]:
    """'1.23.2' -> (1, 23); pre-release suffixes ignored."""
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class OrtModel:
    """The exported encoder/decoder graphs behind the interface the search uses, on numpy."""

    def __init__(self, folder: Path, threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = read_json(self.folder / "manifest.json")
        if self.manifest.get("format") != FORMAT:
            raise CheckpointError("E0111", "not an ofac ONNX export (unknown manifest format)",
                                  self.folder / "manifest.json", help="export the run again with `ofac export`")
        opset, have = int(self.manifest.get("opset", 18)), _version(ort.__version__)
        if opset >= 23 and have < (1, 23):
            raise CheckpointError("E0120", f"this export uses ONNX opset {opset} (attention as one node), which "
                                  f"ONNX Runtime {ort.__version__} cannot run", self.folder / "manifest.json",
                                  help="pip install 'onnxruntime>=1.23', or export again with `--opset 18`")
        options = ort.SessionOptions()
        # no busy-waiting after a run: the search's own work follows every call, and spinning
        # pool threads would take the cores it needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.options, self._sessions = options, {}
        self.adaptors = set(self.manifest["adaptors"]) | {"text"}  # every model embeds text
        self.L = self.manifest["layers"]
        self.vocab_size = self.manifest["model"]["vocab_size"]
        self._cross: dict[int, list] = {}

    def session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort

            path = self.folder / self.manifest["graphs"][name]["file"]
            if not path.exists():
                raise CheckpointError("E0110", "a graph of the export is missing", path,
                                      help="export the run again with `ofac export`")
            self._sessions[name] = ort.InferenceSession(str(path), self.options, providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def encoder_for(self, adaptors: tuple[str, ...]) -> str:
        name = encoder_graph(adaptors)
        if name not in self.manifest["graphs"]:
            have = [g[len("encoder_"):] for g in self.manifest["graphs"] if g.startswith("encoder_")]
            raise ExportError(f"no exported encoder takes inputs ({', '.join(adaptors)})",
                              help=f"exported: {'; '.join(have)}; export a task with these inputs")
        return name

    def encode(self, batch: ArrayBatch):
        """-> memory [B, S, D], mask [B, 1, 1, S] (True: a real position); the cross-attention
        keys/values of every layer are kept for `cross_cache`."""
        adaptors = tuple(a for a, _ in batch.layout[0])
        if any(tuple(a for a, _ in lay) != adaptors for lay in batch.layout):
            raise ExportError("a batch mixing instructions with different inputs", help="answer them separately")
        sess = self.session(self.encoder_for(adaptors))
        names = [i.name for i in sess.get_inputs()]
        feeds, k = {}, 0
        for pos, name in enumerate(adaptors):
            rows = [lay[pos][1] for lay in batch.layout]
            feeds[names[k]] = np.ascontiguousarray(batch.inputs[name][rows])
            k += 1
            if takes_lengths(name):
                feeds[names[k]] = batch.lengths[name][rows]
                k += 1
        out = sess.run(None, feeds)
        memory = out[0]
        self._cross[id(memory)] = [(out[2 + 2 * i], out[3 + 2 * i]) for i in range(self.L)]
        return memory, out[1] == 0  # additive (0 / -inf) -> boolean

    def cross_cache(self, memory):
        return self._cross.pop(id(memory))

    def decode_step(self, tokens, start: int, past, cross, memory_mask, last: bool = True, head: str = "tokens",
                    keep=None):
        """tokens [N, t] from position `start` over the cached (k, v) `past` (None: the first
        call) -> logits [N, V] of the last position, the grown cache; `head`: the output head
        whose decoder graphs run (the token head's, the code head's for images, or the frames
        head's for speech: then `tokens` is a step [N, 1, F], `keep` its prenet masks, and the
        output [N, F + 1] the step's frames and stop logit)."""
        flat_cross = [t for kv in cross for t in kv]
        first, with_past = decoder_graphs(head)
        if first not in self.manifest["graphs"]:
            raise ExportError(f"this export has no decoder for `{head}` outputs",
                              help="export the run again with this ofac (it exports every output head)")
        extra = [] if keep is None else [keep]
        if memory_mask.dtype == np.bool_:  # encode's boolean mask (the speech loop passes it on): additive here
            memory_mask = np.where(memory_mask, 0.0, float("-inf")).astype(np.float32)
        if past is None:
            sess = self.session(first)
            feeds = [tokens, *extra, memory_mask, *flat_cross]
        else:
            sess = self.session(with_past)
            feeds = [tokens, np.array([start], dtype=np.int64), *extra, memory_mask, *[t for kv in past for t in kv],
                     *flat_cross]
        names = [i.name for i in sess.get_inputs()]
        out = sess.run(None, {n: np.ascontiguousarray(x) for n, x in zip(names, feeds)})
        return out[0], [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(self.L)]

    # -- the speech loop's interface (generate/speech.py), with the frames head's graphs

    @property
    def frame_width(self) -> int:
        return self.manifest["model"]["frame_dim"]

    @property
    def frame_positions(self) -> int:
        return self.manifest["model"]["max_positions"]

    def finish(self, pre):
        """Generated pre-net steps [B, T, F] -> the output steps (the postnet graph)."""
        (post,) = self.session("postnet_frames").run(None, {"pre": np.ascontiguousarray(pre, dtype=np.float32)})
        return post

    # -- the diffusion sampler's interface (generate/diffusion.py), with the motion head's graph

    @property
    def width(self) -> int:
        return self.manifest["model"]["motion_dim"]

    def denoise(self, state, x, levels, conditioned, lengths, known):
        """One denoising call: noisy frames -> predicted clean frames, with the prompt's memory or
        (unconditioned) the exported `empty` one."""
        if "denoise_motion" not in self.manifest["graphs"]:
            raise ExportError("this export has no denoiser for MOTION outputs",
                              help="export the run again with this ofac (it exports every output head)")
        memory, mask = state
        if not conditioned:
            empty = np.asarray(self.manifest["graphs"]["denoise_motion"]["empty"], dtype=np.float32)
            memory, mask = np.tile(empty, (len(x), 1, 1)), np.ones((len(x), 1, 1, 1), bool)
        self._cross.pop(id(memory), None)  # the denoiser reads the memory itself, not encode's keys/values
        feeds = {"x": x, "level": levels, "known": known, "lengths": lengths, "memory": memory, "mask": mask}
        (x0,) = self.session("denoise_motion").run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return x0
