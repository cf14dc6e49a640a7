"""The implementations of `postprocess.<name>` ops: generated tokens back into answers (text, a
box in the pixels of the original image, a list of (box, label) objects, an image decoded
by the run's image tokenizer, speech vocoded from generated frames, or a motion in the run's
skeleton).  Validation and
inference share these, so both answer the same way.  No torch."""
from __future__ import annotations

from dataclasses import dataclass

from ..preprocess.box import dequantize
from ..registry import Registry

POSTPROCESS = Registry("postprocess")


@POSTPROCESS.register("text")
def text(tokens: list[int], vocab, attrs: dict, meta: dict) -> str:
    return vocab.decode(tokens)


@POSTPROCESS.register("box", required=("bins", "image"), vocabulary=lambda vocab: tuple(vocab.bin_ids))
def box(tokens: list[int], vocab, attrs: dict, meta: dict) -> list[float] | None:
    """[x0, y0, x1, y1] in pixels of the original image, or None (not four bin tokens).  Only
    bin tokens are generated for a box (`vocabulary`)."""
    bins = [vocab.bin_index.get(t) for t in tokens[:4]]
    if len(bins) < 4 or None in bins:
        return None
    return dequantize(bins, attrs["bins"], meta["images"][attrs["image"]])


@POSTPROCESS.register("box_text", required=("bins", "image"))
def box_text(tokens: list[int], vocab, attrs: dict, meta: dict) -> list[tuple[list[float], str]]:
    """[([x0, y0, x1, y1], label), ...].  Each run of bin tokens holds boxes of four bins; the
    text tokens after a run label its last box.  A run whose length is not a multiple of four
    loses its leading bins (the box next to the label is the one to keep)."""
    out, i, n = [], 0, len(tokens)
    geometry = meta["images"][attrs["image"]]
    while i < n:
        j = i
        while j < n and tokens[j] in vocab.bin_index:
            j += 1
        if j == i:  # text before any box: no object to label
            i += 1
            continue
        k = j
        while k < n and tokens[k] not in vocab.bin_index:
            k += 1
        bins = [vocab.bin_index[t] for t in tokens[i:j]]
        boxes = [bins[a:a + 4] for a in range(len(bins) % 4, len(bins), 4)]
        label = vocab.decode(tokens[j:k])
        out += [(dequantize(b, attrs["bins"], geometry), label if m == len(boxes) - 1 else "")
                for m, b in enumerate(boxes)]
        i = k
    return out


@POSTPROCESS.register("image", required=("grid", "size", "codes"), vocabulary=lambda vocab: tuple(vocab.code_ids),
                      resource="image")
def image(tokens: list[int], vocab, attrs: dict, meta: dict, resource=None):
    """uint8 [size, size, 3]: the generated codes decoded to pixels by the image tokenizer.  Only
    code tokens are generated (`vocabulary`); a shorter sequence (`length=` on the slot) leaves
    the rest of the grid at code 0."""
    cfg = resource.cfg
    if (attrs["grid"], attrs["size"], attrs["codes"]) != (cfg.grid, cfg.size, cfg.codes):
        raise ValueError(f"the task generates {attrs['size']}px images of {attrs['grid']}x{attrs['grid']} codes out "
                         f"of {attrs['codes']}; the image tokenizer decodes {cfg.size}px, {cfg.grid}x{cfg.grid} of "
                         f"{cfg.codes}")
    first, n = vocab.code_ids[0], attrs["grid"] ** 2
    codes = [t - first for t in tokens[:n]]
    codes += [0] * (n - len(codes))
    return resource.decode([codes])[0]


@dataclass
class Speech:
    """Generated speech: the waveform (float32 at `sample_rate`), its log-mel frames [T, n_mels]
    and whether generation ran to max_len without the stop token firing."""

    waveform: object
    sample_rate: int
    frames: object
    hit_max_len: bool


_SPEECH = ("sample_rate", "n_mels", "n_fft", "hop_length", "f_min", "f_max", "n_frames_per_step")


@POSTPROCESS.register("waveform", required=_SPEECH, resource="audio")
def waveform(frames, vocab, attrs: dict, meta: dict, resource=None) -> Speech:
    """Generated steps (generate.speech's Frames) -> unpacked, denormalized log-mel frames ->
    a waveform by the run's vocoder (Griffin-Lim)."""
    f = resource.features
    asked = {k: attrs[k] for k in ("sample_rate", "n_mels", "n_fft", "hop_length", "f_min", "f_max")}
    if asked != {k: getattr(f, k) for k in asked}:
        raise ValueError(f"the task's speech features {asked} are not the run's {vars(f)}")
    width = attrs["n_mels"] * attrs["n_frames_per_step"]
    if frames.steps.shape[1] != width:
        raise ValueError(f"generated steps of {frames.steps.shape[1]} values; the task packs {width}")
    logmel = resource.denormalize(frames.steps.reshape(-1, attrs["n_mels"]))
    return Speech(resource.vocode(logmel), f.sample_rate, logmel, not frames.stopped)


@POSTPROCESS.register("motion", resource="motion")
def motion(generated, vocab, attrs: dict, meta: dict, resource=None):
    """Generated normalized features (generate.diffusion's MotionFeatures) -> a `codec.motion.Motion`
    in the run's skeleton (its BVH frames, joint positions, and save_bvh / save_gif / save_features)."""
    return resource.motion(generated.features, generated.known)
