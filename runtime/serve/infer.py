"""`ofac infer`: answer a trained task or a new instruction for the rows given, and show the
answers (text, or one JSON object per row), drawing predicted boxes or writing generated images
and speech where asked."""
from __future__ import annotations

import json
from pathlib import Path

from .answer import OFASys, Output, read_rows


def answer(run_dir: Path, instruction: str, *, rows: list[dict] | None = None, input: Path | None = None,
           checkpoint: str = "best", device: str | None = None, backend: str = "torch", progress=None,
           **generation) -> list[Output]:
    """Answers for `rows`, or for the rows of the file `input` (media paths relative to it).
    `progress(done, total)` follows the rows."""
    system = OFASys.from_pretrained(run_dir, checkpoint, device, backend=backend)
    rows = rows if rows is not None else read_rows(input)
    base = input.parent if input is not None else Path.cwd()
    report = None if progress is None else (lambda done: progress(done, len(rows)))
    return system.inference(instruction, rows, base_dir=base, progress=report, **generation)


def shown(output: Output, format: str = "text") -> str:
    """An answer as `ofac infer` prints it: its text, its boxes (with labels), or JSON."""
    if format == "json":
        return json.dumps(output.to_dict())
    if output.pixels is not None:
        h, w = output.pixels.shape[:2]
        return f"image {w}x{h} (score {output.score:.3f})"
    if output.speech is not None:
        stop = ", ran to max_len without stopping" if output.hit_max_len else ""
        return f"speech {len(output.waveform) / output.sample_rate:.2f} s at {output.sample_rate} Hz{stop}"
    if output.motion is not None:
        m = output.motion
        return (f"motion {len(m)} frames ({len(m) * m.skeleton.frame_time:.2f} s) of a {m.skeleton.joints}-joint "
                "skeleton")
    if output.boxes:
        labels = output.labels or [""] * len(output.boxes)
        return "; ".join(f"{lab + ' ' if lab else ''}[{', '.join(f'{c:.1f}' for c in b)}]"
                         for b, lab in zip(output.boxes, labels))
    return output.text if output.text is not None else ""


def save_boxes(outputs: list[Output], path: Path, one_row: bool) -> list[Path]:
    """Draw each answer's boxes on its input image: to `path` for one row, else `path/<k>.png`."""
    return _save(outputs, path, one_row, Output.save_box)


def save_images(outputs: list[Output], path: Path, one_row: bool) -> list[Path]:
    """Write each answer's generated image: to `path` for one row, else `path/<k>.png`."""
    return _save(outputs, path, one_row, Output.save_image)


def save_audio(outputs: list[Output], path: Path, one_row: bool) -> list[Path]:
    """Write each answer's generated speech: to `path` for one row (WAV, or FLAC/OGG by its
    suffix), else `path/<k>.wav`."""
    return _save(outputs, path, one_row, Output.save_audio, ".wav")


def save_bvh(outputs: list[Output], path: Path, one_row: bool) -> list[Path]:
    """Write each answer's generated motion as BVH: to `path` for one row, else `path/<k>.bvh`."""
    return _save(outputs, path, one_row, Output.save_bvh, ".bvh")


def save_gif(outputs: list[Output], path: Path, one_row: bool) -> list[Path]:
    """Draw each answer's generated motion as a GIF: to `path` for one row, else `path/<k>.gif`."""
    return _save(outputs, path, one_row, Output.save_gif, ".gif")


def _save(outputs: list[Output], path: Path, one_row: bool, save, suffix: str = ".png") -> list[Path]:
    written = []
    for k, o in enumerate(outputs):
        target = path if one_row else path / f"{k}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        written.append(save(o, target))
    return written
