"""Real media files for runtime tests: PNG/JPEG (Pillow), WAV/FLAC (soundfile), MP4 (PyAV)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, size=(64, 48), color=(200, 30, 30), box=None, mode="RGB") -> Path:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (255, 255, 255))
    if box:
        ImageDraw.Draw(img).rectangle(box, fill=color)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return path


def write_audio(path: Path, seconds=0.5, rate=22050, freq=440.0, channels=1) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(path, wav, rate)
    return path


def write_video(path: Path, frames=12, size=(32, 32), fps=10, color=(0, 200, 0), bar: int = 6) -> Path:
    """A bar `bar` pixels wide of `color` moving right on black (`bar` = the width: a plain frame)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for k in range(frames):
            arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            arr[:, (k * 2) % size[0]:(k * 2) % size[0] + bar] = color
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
