"""Generate the image-output datasets (deterministic; seconds; nothing is downloaded).

  python examples/make_images.py [--out examples/images] [--per-caption 30] [--seed 0]

32x32 shapes scenes drawn with Pillow, for three tasks that generate images (examples/images.ofa):

  t2i_*.jsonl     text, 2        "a large red circle on the left" -> the image (column `2`: the
                                 name OFASys gives the unnamed target slot of its instruction,
                                 the position of the slot among the instruction's items)
  infill_*.jsonl  img, 3         a scene -> the same scene (the instruction masks its centre)
  frames_*.jsonl  clip, next     4 frames (MP4) of a shape moving -> the frame that follows

Captions: shape (circle, square, triangle) x colour (red, blue, green, yellow, purple, cyan) x
place (left, right, top, bottom, center) x size (small, large) = 180, each drawn with +-2 px of
jitter.  One place of every (shape, colour, size) is held out of training: t2i_valid.jsonl holds
those 36 captions, never seen in training (and t2i_seen.jsonl new drawings of seen captions); a
two-object tier ("a red circle left of a blue square") is in t2i2_*.jsonl.  Every row also
carries the attributes it was drawn from (shape, colour, place, size; centre x, y and radius r),
which
benchmarks/image_zoo.py's judge is trained on.  An existing output with the same settings is
kept (`--force` regenerates).  OFAC_MAX_ROWS=N (the smoke tests') writes one drawing a caption and
at most N rows of the other files."""
from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (230, 200, 30),
           "purple": (150, 60, 190), "cyan": (40, 190, 200)}
SHAPES = ("circle", "square", "triangle")
PLACES = {"left": (8, 16), "right": (24, 16), "top": (16, 8), "bottom": (16, 24), "center": (16, 16)}
SIZES = {"small": (4, 5), "large": (7, 8)}  # radius range, pixels
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
SIZE, BACKGROUND = 32, (245, 245, 240)
CLIP_FRAMES, STEP = 4, 3  # frames shown, pixels moved per frame


def draw(shapes, size: int = SIZE):
    """A scene: [(kind, colour, cx, cy, r), ...] on the background."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for kind, colour, cx, cy, r in shapes:
        box, fill = (cx - r, cy - r, cx + r, cy + r), COLOURS[colour]
        if kind == "circle":
            d.ellipse(box, fill=fill)
        elif kind == "square":
            d.rectangle(box, fill=fill)
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def caption(shape: str, colour: str, place: str, size: str) -> str:
    where = "in the center" if place == "center" else f"at the {place}" if place in ("top", "bottom") \
        else f"on the {place}"
    return f"a {size} {colour} {shape} {where}"


def single(rng: random.Random, shape: str, colour: str, place: str, size: str):
    cx, cy = PLACES[place]
    r = rng.randint(*SIZES[size])
    return [(shape, colour, cx + rng.randint(-2, 2), cy + rng.randint(-2, 2), r)]


def captions() -> list[tuple[str, str, str, str]]:
    return [(s, c, p, z) for s in SHAPES for c in COLOURS for p in PLACES for z in SIZES]


def held_out(rng: random.Random) -> set[tuple]:
    """One place of every (shape, colour, size): the captions training never sees."""
    out = set()
    for s in SHAPES:
        for c in COLOURS:
            for z in SIZES:
                out.add((s, c, rng.choice(list(PLACES)), z))
    return out


def t2i_rows(out: Path, rng: random.Random, per_caption: int) -> dict[str, list]:
    hidden = held_out(rng)
    splits: dict[str, list] = {"train": [], "valid": [], "seen": []}
    k = 0
    for attrs in captions():
        counts = {"valid": 5} if attrs in hidden else {"train": per_caption, "seen": 1}
        for split, n in counts.items():
            for _ in range(n):
                path = f"img/t2i_{k}.png"
                drawn = single(rng, *attrs)
                draw(drawn).save(out / path)
                shape, colour, place, size = attrs
                _, _, x, y, r = drawn[0]
                splits[split].append({"text": caption(*attrs), "2": path, "shape": shape, "colour": colour,
                                      "place": place, "size": size, "x": x, "y": y, "r": r})
                k += 1
    for rows in splits.values():
        rng.shuffle(rows)
    return splits


def pair_rows(out: Path, rng: random.Random, n: int, split: str) -> list[dict]:
    """Two small shapes side by side or one above the other: "a red circle left of a blue square"."""
    rows = []
    for k in range(n):
        (s1, c1), (s2, c2) = rng.sample([(s, c) for s in SHAPES for c in COLOURS], 2)
        relation = rng.choice(("left of", "above"))
        a, b = ("left", "right") if relation == "left of" else ("top", "bottom")
        shapes = [(s1, c1, PLACES[a][0] + rng.randint(-1, 1), PLACES[a][1] + rng.randint(-2, 2), rng.randint(4, 5)),
                  (s2, c2, PLACES[b][0] + rng.randint(-1, 1), PLACES[b][1] + rng.randint(-2, 2), rng.randint(4, 5))]
        if relation == "above":
            shapes = [(s, c, x + rng.randint(-1, 1), y, r) for s, c, x, y, r in shapes]
        path = f"img/pair_{split}_{k}.png"
        draw(shapes).save(out / path)
        rows.append({"text": f"a {c1} {s1} {relation} a {c2} {s2}", "2": path, "relation": relation,
                     "first": f"{c1} {s1}", "second": f"{c2} {s2}"})
    return rows


def infill_rows(out: Path, rng: random.Random, n: int, split: str) -> list[dict]:
    """Scenes whose shape the centre mask (mask_ratio 0.5: pixels 8..23) cuts: partly visible."""
    rows = []
    for k in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        r = rng.randint(5, 8)
        cx, cy = rng.randint(6, 26), rng.randint(6, 26)
        while 8 + r <= cx <= 23 - r and 8 + r <= cy <= 23 - r:  # wholly hidden: move it
            cx, cy = rng.randint(6, 26), rng.randint(6, 26)
        path = f"img/infill_{split}_{k}.png"
        draw([(shape, colour, cx, cy, r)]).save(out / path)
        rows.append({"img": path, "3": path, "shape": shape, "colour": colour, "x": cx, "y": cy, "r": r})
    return rows


def frame_rows(out: Path, rng: random.Random, n: int, split: str) -> list[dict]:
    """A shape moving STEP px a frame: CLIP_FRAMES frames as an MP4, the next frame as a PNG."""
    import av
    import numpy as np

    rows = []
    for k in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        direction = rng.choice(list(DIRECTIONS))
        (dx, dy), r = DIRECTIONS[direction], rng.randint(4, 6)
        travel = STEP * CLIP_FRAMES
        x = rng.randint(r + 1, SIZE - r - 2) if dx == 0 else (rng.randint(r + 1, 12) if dx > 0 else
                                                               rng.randint(SIZE - 13, SIZE - r - 2))
        y = rng.randint(r + 1, SIZE - r - 2) if dy == 0 else (rng.randint(r + 1, 12) if dy > 0 else
                                                               rng.randint(SIZE - 13, SIZE - r - 2))
        frames = [draw([(shape, colour, x + dx * STEP * t, y + dy * STEP * t, r)]) for t in range(CLIP_FRAMES + 1)]
        clip = f"clips/{split}_{k}.mp4"
        with av.open(str(out / clip), "w") as f:
            stream = f.add_stream("mpeg4", rate=8)
            stream.width = stream.height = SIZE
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = 400_000
            for img in frames[:-1]:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                    f.mux(packet)
            for packet in stream.encode():
                f.mux(packet)
        nxt = f"img/next_{split}_{k}.png"
        frames[-1].save(out / nxt)
        rows.append({"clip": clip, "next": nxt, "shape": shape, "colour": colour, "direction": direction,
                     "x": x + dx * travel, "y": y + dy * travel, "r": r})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "images")
    ap.add_argument("--per-caption", type=int, default=30, help="training drawings of each seen caption")
    ap.add_argument("--pairs", type=int, default=1500, help="two-object training scenes")
    ap.add_argument("--infill", type=int, default=2000, help="infilling training scenes")
    ap.add_argument("--clips", type=int, default=2000, help="next-frame training clips")
    ap.add_argument("--valid", type=int, default=200, help="validation rows of the infilling, frame, pair tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    cap = os.environ.get("OFAC_MAX_ROWS")  # smoke tests: a few rows a file (as make_data.py)
    if cap:
        args.per_caption = 1
        for name in ("pairs", "infill", "clips", "valid"):
            setattr(args, name, min(getattr(args, name), int(cap)))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force")}
    stamp = args.out / "settings.json"
    if not args.force and stamp.exists() and json.loads(stamp.read_text()) == settings:
        print(f"{args.out}: up to date")
        return args.out
    for sub in ("img", "clips"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for split, rows in t2i_rows(args.out, rng, args.per_caption).items():
        write(args.out / f"t2i_{split}.jsonl", rows)
    for split, n in (("train", args.pairs), ("valid", args.valid)):
        write(args.out / f"t2i2_{split}.jsonl", pair_rows(args.out, rng, n, split))
    for split, n in (("train", args.infill), ("valid", args.valid)):
        write(args.out / f"infill_{split}.jsonl", infill_rows(args.out, rng, n, split))
    for split, n in (("train", args.clips), ("valid", args.valid)):
        write(args.out / f"frames_{split}.jsonl", frame_rows(args.out, rng, n, split))
    stamp.write_text(json.dumps(settings))
    print(f"{args.out}: text-to-image, two-object, infilling and next-frame datasets")
    return args.out


if __name__ == "__main__":
    main()
