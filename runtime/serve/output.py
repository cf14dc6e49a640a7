"""What `OFASys.inference` returns: `Output`, one answer, whatever the instruction's target
(text, boxes, an image, speech, a motion), with its n-best and the helpers that write it out.
No torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evaluate.postprocess import Speech
from ..preprocess.media import load_image


@dataclass
class Output:
    """One answer.  `text`: the decoded text (for boxes, their labels joined by ", ");
    `boxes`: [x0, y0, x1, y1] in pixels of the original image; `labels`: one per box when the
    target pairs boxes with text; `image`: a generated image (PIL); `waveform`: generated
    speech (float32 numpy at `sample_rate`), `fbank` its log-mel frames, `hit_max_len` True when
    its stop token never fired; `motion`: a generated motion (`codec.motion.Motion`: its
    skeleton, features, BVH `frames`; `save_bvh`, `save_gif`, `save_features`); `score`: the
    length-normalized log-probability (or the reranker's score when one reranked the candidates);
    `n_best`: every hypothesis, best first (this one included); `scores`: their scores; `images`:
    their images."""

    text: str | None = None
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    score: float = float("-inf")
    n_best: list["Output"] = field(default_factory=list, repr=False)
    pixels: object = field(default=None, repr=False)  # a generated image, uint8 [S, S, 3]
    speech: object = field(default=None, repr=False)  # generated speech (postprocess.Speech)
    motion: object = field(default=None, repr=False)  # a generated motion (codec.motion.Motion)
    source: object = field(default=None, repr=False)  # the input image, for save_box
    base_dir: Path | None = field(default=None, repr=False)

    @property
    def scores(self) -> list[float]:
        return [o.score for o in self.n_best]

    @property
    def image(self):
        """The generated image as a PIL image (None for other outputs)."""
        if self.pixels is None:
            return None
        from PIL import Image

        return Image.fromarray(self.pixels)

    @property
    def waveform(self):
        return None if self.speech is None else self.speech.waveform

    @property
    def sample_rate(self) -> int | None:
        return None if self.speech is None else self.speech.sample_rate

    @property
    def fbank(self):
        return None if self.speech is None else self.speech.frames

    @property
    def hit_max_len(self) -> bool:
        return self.speech is not None and self.speech.hit_max_len

    def save_audio(self, path: str | Path, sample_rate: int | None = None) -> Path:
        """Write the generated speech (WAV unless the name says .flac or .ogg; `.wav` is added to
        a name without a suffix).  `sample_rate` resamples first (default: the model's)."""
        if self.speech is None:
            raise ValueError("this output has no generated speech (the instruction does not generate audio)")
        import soundfile as sf

        path = Path(path)
        path = path if path.suffix else path.with_suffix(".wav")
        wav, rate = self.speech.waveform, self.speech.sample_rate
        if sample_rate and sample_rate != rate:
            from ..preprocess.audio import resample

            wav, rate = resample(wav, rate, sample_rate), sample_rate
        sf.write(str(path), wav, rate)
        return path

    def save_fbank(self, path: str | Path) -> Path:
        """Write the generated log-mel frames [T, n_mels] as a .npy file."""
        if self.speech is None:
            raise ValueError("this output has no generated speech (the instruction does not generate audio)")
        path = Path(path)
        path = path if path.suffix else path.with_suffix(".npy")
        np.save(path, self.speech.frames)
        return path

    def _motion(self):
        if self.motion is None:
            raise ValueError("this output has no generated motion (the instruction does not generate MOTION)")
        return self.motion

    @property
    def bvh_motion(self):
        """The generated motion's BVH frames [T, channels] (OFASys' name), None for other outputs."""
        return None if self.motion is None else self.motion.frames

    def save_bvh(self, path: str | Path) -> Path:
        """Write the generated motion as a BVH file in the skeleton of the model's training clips
        (`.bvh` is added to a name without a suffix)."""
        path = Path(path)
        return self._motion().save_bvh(path if path.suffix else path.with_suffix(".bvh"))

    def save_gif(self, path: str | Path, size: int = 160) -> Path:
        """Draw the generated motion as an animated stick figure (GIF, one frame a motion frame)."""
        path = Path(path)
        return self._motion().save_gif(path if path.suffix else path.with_suffix(".gif"), size)

    def save_features(self, path: str | Path) -> Path:
        """Write the generated motion's features [T, F] and BVH frames as an .npz file."""
        path = Path(path)
        return self._motion().save_features(path if path.suffix else path.with_suffix(".npz"))

    @property
    def images(self) -> list:
        """The n-best generated images (PIL), best first."""
        return [o.image for o in self.n_best if o.pixels is not None]

    def to_dict(self, n_best: bool = True) -> dict:
        out = {"text": self.text, "score": self.score}
        if self.boxes:
            out["boxes"] = self.boxes
        if self.labels:
            out["labels"] = self.labels
        if self.pixels is not None:  # a PNG data URL: small, and any browser or PIL reads it
            import base64
            import io

            buf = io.BytesIO()
            self.image.save(buf, format="PNG")
            out["image"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        if self.speech is not None:  # a WAV data URL, as the image's PNG
            import base64
            import io

            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, self.speech.waveform, self.speech.sample_rate, format="WAV")
            out["audio"] = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
            out["seconds"] = round(len(self.speech.waveform) / self.speech.sample_rate, 3)
            out["hit_max_len"] = self.speech.hit_max_len
        if self.motion is not None:
            from ..preprocess.bvh import dumps

            out["frames"] = len(self.motion)
            out["bvh"] = dumps(self.motion.skeleton, self.motion.frames)
        if n_best and len(self.n_best) > 1:
            out["n_best"] = [o.to_dict(n_best=False) for o in self.n_best]
        return out

    def save_image(self, path: str | Path) -> Path:
        """Write the generated image (PNG unless the name says otherwise; `.png` is added to a
        name without a suffix, as OFASys does)."""
        if self.pixels is None:
            raise ValueError("this output has no generated image (the instruction does not generate one)")
        path = Path(path)
        path = path if path.suffix else path.with_suffix(".png")
        self.image.save(path)
        return path

    def save_box(self, path: str | Path, color: str = "red", width: int = 3) -> Path:
        """Draw the predicted boxes (and labels) on the input image; write it to `path`."""
        from PIL import ImageDraw

        if self.source is None:
            raise ValueError("this output has no input image to draw on (the instruction reads no IMAGE)")
        image = load_image(self.source, self.base_dir).convert("RGB")
        draw = ImageDraw.Draw(image)
        for k, box in enumerate(self.boxes):
            draw.rectangle(box, outline=color, width=width)
            if k < len(self.labels) and self.labels[k]:
                draw.text((box[0] + width + 1, box[1] + width), self.labels[k], fill=color)
        path = Path(path)
        image.save(path)
        return path


def _output(value, score: float) -> Output:
    if isinstance(value, np.ndarray):  # a generated image
        return Output(None, [], [], score, pixels=value)
    if isinstance(value, Speech):
        return Output(None, [], [], score, speech=value)
    if hasattr(value, "skeleton") and hasattr(value, "features"):  # a generated motion
        return Output(None, [], [], score, motion=value)
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # (box, label) objects
        labels = [label for _, label in value]
        return Output(", ".join(lb for lb in labels if lb), [list(b) for b, _ in value], labels, score)
    if isinstance(value, list) or value is None:  # one box (None: not four bin tokens)
        return Output(None, [list(value)] if value else [], [], score)
    return Output(value, [], [], score)


