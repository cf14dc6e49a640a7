"""Write the media files that examples/data/*.jsonl refer to (deterministic, a second or two).

  python examples/make_media.py [--out examples/data]

Images are the shapes scenes the captions, questions and boxes describe; audio is a tone
sequence per spoken word (a stand-in until the example zoo synthesizes speech); video is a
square moving the way its caption says.  They are small and shipped (examples/data/images,
audio, video); this script writes them again, the same."""
from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np
from make_data import COLOURS  # noqa: E402  (examples/ is this script's folder)

# shapes per scene: (kind, colour, box x0 y0 x1 y1) on a 200x200 canvas; boxes match data/*.jsonl
SCENES = {
    "shapes_0": [("circle", "red", (40, 12, 96, 70)), ("square", "blue", (30, 100, 110, 180))],
    "shapes_1": [("triangle", "green", (100, 90, 180, 170))],
    "shapes_2": [("square", "yellow", (8, 120, 60, 172)), ("square", "yellow", (120, 120, 172, 172))],
}


def draw_scene(path: Path, shapes) -> None:
    from make_data import draw  # the demo data's drawing, on this file's 200x200 canvas

    draw(path, [(colour, kind, box) for kind, colour, box in shapes], size=200)


def speak(path: Path, text: str, rate: int = 16000) -> None:
    """One 0.25 s tone per word, its pitch a stable function of the word."""
    import soundfile as sf

    pieces = []
    for word in text.split():
        freq = 200 + zlib.crc32(word.encode()) % 600
        t = np.arange(int(0.25 * rate)) / rate
        pieces += [0.3 * np.sin(2 * np.pi * freq * t), np.zeros(int(0.05 * rate))]
    sf.write(path, np.concatenate(pieces).astype(np.float32), rate)


def moving_square(path: Path, direction: str = "left", frames: int = 16, size: int = 64) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            arr = np.full((size, size, 3), 240, dtype=np.uint8)
            x = size - 16 - k * 3 if direction == "left" else k * 3
            arr[24:40, x:x + 16] = COLOURS["green"]
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    (out / "video").mkdir(exist_ok=True)
    for name, shapes in SCENES.items():
        draw_scene(out / "images" / f"{name}.png", shapes)
    for i, text in enumerate(["three one four", "one five nine", "two six five"]):
        speak(out / "audio" / f"digits_{i}.flac", text)
    moving_square(out / "video" / "moving_0.mp4", "left")
    print(f"wrote media for the example data under {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    main(ap.parse_args().out)
