"""Generate the demo / zoo datasets (deterministic; a few seconds; nothing is downloaded).

  python examples/make_data.py [--out examples/zoo] [--scenes 3000] [--valid 100] [--seed 0] [--zoo]

Shapes scenes drawn with Pillow (1-3 coloured shapes at random positions and sizes, no
overlap) give four tasks on the same images:

  caption.jsonl    img, cap        "a red circle above a blue square"
  vqa.jsonl        img, question, answer     "what colour is the triangle?" -> "green"
  grounding.jsonl  img, phrase, box          "the green triangle" -> x0,y0,x1,y1 (pixels)
  detection.jsonl  img, boxes, labels        every shape's box and "green triangle"

and a text-to-SQL task over a generated SQLite database of the same scenes:

  sql.jsonl        question, db (the schema and content, a STRUCT database), query
  shapes.sqlite    the database itself; the metric executes gold and predicted SQL on it

With `--zoo` also (see examples/multitask.ofa):

  video.jsonl      video, cap      MP4 clips (PyAV) of a shape moving: "a red circle moves up"
  infill.jsonl     sentence        templated sentences, for span infilling
  table2text.jsonl triples, tgt    (subject, relation, object) triples -> one sentence
  compress.jsonl   src, tgt        a wordy sentence -> its short form (summarization-style)
  speech.jsonl     wav, text       FLAC speech of digit strings and short phrases, synthesized
                                   by espeak-ng (examples/speech.py) in six voices, at varied
                                   speed and pitch: "three one four", "the red circle moves up"
  digits.jsonl     img, label      scikit-learn's bundled handwritten digits (1797 8x8 scans by
                                   43 writers; the valid split is writers' digits never trained
                                   on), upsampled to 64x64 PNGs: "seven"

Each file has a train and a valid split (`*_train.jsonl`, `*_valid.jsonl`) from disjoint
scenes.  An existing output with the same settings is kept (`--force` regenerates)."""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
from pathlib import Path

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIZE = 64


def overlaps(a, b, gap=2) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def scene(rng: random.Random):
    """1-3 shapes of distinct (colour, kind) pairs at non-overlapping places."""
    n = rng.choice((1, 2, 2, 3))
    pairs = rng.sample([(c, k) for c in COLOURS for k in SHAPES], n)
    shapes = []
    for colour, kind in pairs:
        for _ in range(100):
            side = rng.randint(14, 26)
            x0, y0 = rng.randint(1, SIZE - side - 1), rng.randint(1, SIZE - side - 1)
            box = (x0, y0, x0 + side, y0 + side)
            if not any(overlaps(box, s[2]) for s in shapes):
                shapes.append((colour, kind, box))
                break
    return shapes


def draw(path: Path, shapes, size: int = SIZE) -> None:
    """(colour, kind, (x0, y0, x1, y1)) shapes on a light size x size canvas."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (245, 245, 240))
    d = ImageDraw.Draw(img)
    for colour, kind, (x0, y0, x1, y1) in shapes:
        fill = COLOURS[colour]
        if kind == "circle":
            d.ellipse((x0, y0, x1, y1), fill=fill)
        elif kind == "triangle":
            d.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=fill)
        else:
            d.rectangle((x0, y0, x1, y1), fill=fill)
    img.save(path)


def caption(shapes) -> str:
    """One shape: "a red circle"; two: their vertical or horizontal relation; three: a list."""
    name = [f"{c} {k}" for c, k, _ in shapes]
    if len(shapes) == 1:
        return f"a {name[0]}"
    if len(shapes) == 2:
        (a, b) = shapes
        dy = (a[2][1] + a[2][3]) - (b[2][1] + b[2][3])
        dx = (a[2][0] + a[2][2]) - (b[2][0] + b[2][2])
        if abs(dy) >= abs(dx):
            rel = "above" if dy < 0 else "below"
        else:
            rel = "left of" if dx < 0 else "right of"
        return f"a {name[0]} {rel} a {name[1]}"
    return "a " + ", a ".join(name[:-1]) + f" and a {name[-1]}"


def rows_for(i: int, shapes, rng: random.Random) -> dict[str, dict]:
    img = f"images/{i}.png"
    colour, kind, box = rng.choice(shapes)
    kinds = [k for _, k, _ in shapes]
    unique = [(c, k) for c, k, _ in shapes if kinds.count(k) == 1]  # "the triangle" must be one shape
    if unique and rng.random() < 0.5:
        c, k = rng.choice(unique)
        question, answer = f"what colour is the {k}?", c
    else:
        question, answer = "how many shapes are there?", ["zero", "one", "two", "three"][len(shapes)]
    return {
        "caption": {"img": img, "cap": caption(shapes)},
        "vqa": {"img": img, "question": question, "answer": answer},
        "grounding": {"img": img, "phrase": f"the {colour} {kind}", "box": ",".join(map(str, box))},
        "detection": {"img": img, "boxes": [list(s[2]) for s in shapes], "labels": [f"{s[0]} {s[1]}" for s in shapes]},
    }


SQL_TEMPLATES = [
    ("how many shapes are {colour}?", "SELECT count(*) FROM shapes WHERE colour = '{colour}'"),
    ("how many {kind}s are there?", "SELECT count(*) FROM shapes WHERE kind = '{kind}'"),
    ("which scenes have a {colour} {kind}?",
     "SELECT scene FROM shapes WHERE colour = '{colour}' AND kind = '{kind}'"),
    ("what kinds of {colour} shapes are there?", "SELECT DISTINCT kind FROM shapes WHERE colour = '{colour}'"),
    ("how many shapes are bigger than {side} pixels?", "SELECT count(*) FROM shapes WHERE side > {side}"),
]


def sql_task(out: Path, scenes: list, rng: random.Random, n: int) -> list[dict]:
    """A shapes table of the first scenes (a small database whose content the STRUCT carries)
    and templated questions with gold SQL."""
    table = [(i, c, k, b[2] - b[0]) for i, shapes in enumerate(scenes[:12]) for c, k, b in shapes]
    db_path = out / "shapes.sqlite"
    db_path.unlink(missing_ok=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE shapes (scene, colour, kind, side)")
        conn.executemany("INSERT INTO shapes VALUES (?, ?, ?, ?)", table)
    db = {"db_id": "shapes", "tables": {"shapes": {"scene": [r[0] for r in table], "colour": [r[1] for r in table],
                                                   "kind": [r[2] for r in table], "side": [r[3] for r in table]}}}
    rows = []
    for _ in range(n):
        question, query = rng.choice(SQL_TEMPLATES)
        values = {"colour": rng.choice(list(COLOURS)), "kind": rng.choice(SHAPES), "side": rng.choice((16, 20, 24))}
        rows.append({"question": question.format(**values), "db": db, "query": query.format(**values)})
    return rows


DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SIZES = ("small", "large")
PLACES = ("left", "right", "top", "bottom")


def moving_clip(path: Path, colour: str, kind: str, direction: str, rng: random.Random, frames: int = 12) -> None:
    """An MP4 of one shape crossing a 64x64 canvas in `direction`."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    side, (dx, dy) = 16, DIRECTIONS[direction]
    x = rng.randint(20, 28) if dx == 0 else (44 if dx < 0 else 4)
    y = rng.randint(20, 28) if dy == 0 else (44 if dy < 0 else 4)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            img = Image.new("RGB", (SIZE, SIZE), (245, 245, 240))
            x0, y0 = x + dx * 3 * k, y + dy * 3 * k
            box, d = (x0, y0, x0 + side, y0 + side), ImageDraw.Draw(img)
            if kind == "circle":
                d.ellipse(box, fill=COLOURS[colour])
            elif kind == "triangle":
                d.polygon([((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=COLOURS[colour])
            else:
                d.rectangle(box, fill=COLOURS[colour])
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
HEDGES = ("as far as anyone can tell", "if you look closely", "without any doubt", "at this very moment")
VERBS = ("sits", "rests", "stays", "waits")


def zoo_rows(out: Path, i: int, rng: random.Random, speaker) -> dict[str, dict]:
    """The zoo's extra tasks for example i: a video clip, an infilling sentence, triples, a
    sentence to compress, and speech."""
    import numpy as np
    import soundfile as sf
    from speech import VOICES

    colour, kind = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    direction, size, place = rng.choice(list(DIRECTIONS)), rng.choice(SIZES), rng.choice(PLACES)
    moving_clip(out / "video" / f"{i}.mp4", colour, kind, direction, rng)
    other = rng.choice([c for c in COLOURS if c != colour])
    if rng.random() < 0.6:
        spoken = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(2, 4)))
    else:
        c, k = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        spoken = f"the {c} {k} moves {rng.choice(list(DIRECTIONS))}"
    wav, rate = speaker.say(spoken, voice=rng.choice(VOICES), wpm=rng.randint(140, 200), pitch=rng.randint(30, 70))
    sf.write(out / "speech" / f"{i}.flac", (wav.astype(np.float32) / 32768.0), rate)
    return {
        "video": {"video": f"video/{i}.mp4", "cap": f"a {colour} {kind} moves {direction}"},
        "infill": {"sentence": f"the {size} {colour} {kind} sits at the {place} next to a {other} one"},
        "table2text": {"triples": [[kind, "colour", colour], [kind, "size", size], [kind, "place", place]],
                       "tgt": f"the {size} {kind} at the {place} is {colour}"},
        "compress": {"src": f"{rng.choice(HEDGES)} , the {size} {colour} {kind} that you can see in the picture "
                            f"{rng.choice(VERBS)} quietly over at the {place} , {rng.choice(HEDGES)}",
                     "tgt": f"{size} {colour} {kind} at the {place}"},
        "speech": {"wav": f"speech/{i}.flac", "text": spoken},
    }


def digits_rows(out: Path, valid_share: float = 0.2) -> dict[str, list]:
    """scikit-learn's handwritten digits as 64x64 PNGs; the last `valid_share` of the set (its
    scans come from writers after the first ones) is the valid split."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    (out / "digits").mkdir(exist_ok=True)
    rows = []
    for k, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        ink = (255 - pixels / 16.0 * 255).astype(np.uint8)  # dark ink on white, as scanned
        Image.fromarray(ink).resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("RGB").save(
            out / "digits" / f"{k}.png")
        rows.append({"img": f"digits/{k}.png", "label": DIGITS[int(label)]})
    cut = int(len(rows) * (1 - valid_share))
    return {"train": rows[:cut], "valid": rows[cut:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "zoo")
    ap.add_argument("--scenes", type=int, default=3000)
    ap.add_argument("--valid", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--zoo", action="store_true", help="also the video, infilling and table-to-text tasks")
    args = ap.parse_args()
    # $OFAC_MAX_ROWS: a smoke run (the documentation's tests) writes at most this many train and
    # valid rows per task; scenes keep their numbers (valid scenes start at --scenes)
    cap = int(os.environ.get("OFAC_MAX_ROWS") or 0) or None
    stamp = {"scenes": args.scenes, "valid": args.valid, "seed": args.seed, "version": 3, "zoo": args.zoo,
             "max_rows": cap}
    marker = args.out / "settings.json"
    if not args.force and marker.exists() and json.loads(marker.read_text()) == stamp:
        print(f"{args.out}: up to date")
        return
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    speaker = digits = None
    if args.zoo:
        from speech import Speaker

        (args.out / "video").mkdir(exist_ok=True)
        (args.out / "speech").mkdir(exist_ok=True)
        speaker, digits = Speaker(), digits_rows(args.out)
    rng = random.Random(args.seed)
    total = args.scenes + args.valid
    scenes = [scene(rng) for _ in range(total)]
    split = {"train": range(min(args.scenes, cap or args.scenes)),
             "valid": range(args.scenes, args.scenes + min(args.valid, cap or args.valid))}
    for part, idx in split.items():
        tasks: dict[str, list] = {}
        for i in idx:
            draw(args.out / "images" / f"{i}.png", scenes[i])
            for name, row in rows_for(i, scenes[i], rng).items():
                tasks.setdefault(name, []).append(row)
            if args.zoo:  # its own generator: the shapes tasks stay the same with or without --zoo
                for name, row in zoo_rows(args.out, i, random.Random(args.seed * 1_000_003 + i), speaker).items():
                    tasks.setdefault(name, []).append(row)
        if digits is not None:
            tasks["digits"] = digits[part][:cap]
        tasks["sql"] = sql_task(args.out, scenes, random.Random(args.seed + (part == "valid")), len(idx))
        for name, rows in tasks.items():
            (args.out / f"{name}_{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if speaker is not None:
        speaker.close()
    marker.write_text(json.dumps(stamp))
    extra = "; video, infill, table2text, compress, speech, digits" if args.zoo else ""
    print(f"{args.out}: {len(split['train'])} train and {len(split['valid'])} valid scenes; caption, vqa, grounding, "
          f"detection, sql{extra}")


if __name__ == "__main__":
    main()
