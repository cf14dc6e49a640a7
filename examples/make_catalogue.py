"""Generate the data of the OFASys task catalogue (examples/catalogue.ofa): every understanding
task of OFASys' documentation that the zoo does not train, each on deterministic generated data
(seconds; nothing is downloaded).

  python examples/make_catalogue.py [--out examples/catalogue] [--scenes 2000] [--valid 100] [--seed 0]

Shapes scenes (make_data.py's) give the image tasks:

  snli_ve     img, cap, hyp, label    premise caption + hypothesis -> yes / no / maybe
  itm         0, 2, 4                 OFASys' legacy unnamed slots: image, caption, yes / no
                                      (half the captions are another scene's)
  grounded    img, patch_boxes, cap   a region's box -> "a red circle"
  vqa         image, question, answer, answers   ten simulated human answers per question
                                      (most right, some a near miss) for VQA's soft score

moving-shape clips give video_classify (video, label_name) and video_qa (video, question,
answer); scikit-learn's handwritten digits give image_classify (image, label_name, with
`preprocess=imagenet`).  Generated sentences give the GLUE forms: sst2 (sentence, label),
mnli (premise, hypothesis, label), cola (sentence, label: acceptable word order and agreement
or not), mrpc (sentence1, sentence2, label: paraphrase or not); and

  fetaqa      database, src, tgt      FeTaQA's linearized table, a question, a sentence answer
  sudoku      src, tgt, mask_ratio    4x4 and 9x9 puzzles with unique solutions, `d : d | ...`
  natural_instructions  instruction, examples, src, tgt    a definition, two positive
              examples and an input, over sub-tasks on word lists; the valid split holds
              sub-tasks never trained on (the same kinds of operation on other words)

Each task has `<name>_train.jsonl` and `<name>_valid.jsonl`.  $OFAC_MAX_ROWS caps every split
(the documentation's smoke tests).  An output with the same settings is kept (`--force`)."""
from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

from make_data import COLOURS, DIRECTIONS, SHAPES, caption, digits_rows, draw, moving_clip, scene

NOT_VISIBLE = ("is made of wood", "belongs to a child", "was drawn yesterday", "is very heavy")


def shape_rows(i: int, shapes, other_scene, rng: random.Random) -> dict[str, dict]:
    img = f"images/{i}.png"
    present = [(c, k) for c, k, _ in shapes]
    absent = [(c, k) for c in COLOURS for k in SHAPES if (c, k) not in present]
    kind = rng.choice(("yes", "no", "maybe"))
    if kind == "yes":
        hyp = "there is a {} {}".format(*rng.choice(present))
    elif kind == "no":
        hyp = "there is a {} {}".format(*rng.choice(absent))
    else:
        hyp = "the {} {} {}".format(*rng.choice(present), rng.choice(NOT_VISIBLE))
    # the premise names some of the shapes; the image decides the rest
    premise = caption(rng.sample(shapes, rng.randint(1, len(shapes))))
    match = rng.random() < 0.5
    colour, kind_, box = rng.choice(shapes)
    kinds = [k for _, k, _ in shapes]
    unique = [(c, k) for c, k, _ in shapes if kinds.count(k) == 1]
    if unique and rng.random() < 0.5:
        c, k = rng.choice(unique)
        question, answer = f"what colour is the {k}?", c
        near = [x for x in COLOURS if x != c]
    else:
        question, answer = "how many shapes are there?", ("zero", "one", "two", "three")[len(shapes)]
        near = [x for x in ("one", "two", "three") if x != answer]
    humans = [answer] * rng.randint(5, 10)
    humans += [rng.choice(near) for _ in range(10 - len(humans))]
    rng.shuffle(humans)
    return {
        "snli_ve": {"img": img, "cap": premise, "hyp": hyp, "label": kind},
        "itm": {"0": img, "2": caption(shapes if match else other_scene), "4": "yes" if match else "no"},
        "grounded": {"img": img, "patch_boxes": ",".join(map(str, box)), "cap": f"a {colour} {kind_}"},
        "vqa": {"image": img, "question": question, "answer": max(set(humans), key=humans.count),
                "answers": humans},
    }


def video_rows(out: Path, i: int, rng: random.Random) -> dict[str, dict]:
    colour, kind, direction = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(list(DIRECTIONS))
    moving_clip(out / "video" / f"{i}.mp4", colour, kind, direction, rng, frames=8)
    video = f"video/{i}.mp4"
    question, answer = rng.choice([("which way does the shape move?", direction),
                                   ("what colour is the shape?", colour), ("what shape is it?", kind)])
    return {"video_classify": {"video": video, "label_name": f"{colour} {kind}"},
            "video_qa": {"video": video, "question": question, "answer": answer}}


# ------------------------------------------------------------------ GLUE forms

NOUNS = ("film", "meal", "book", "song", "trip", "game", "show", "hotel")
GOOD = ("wonderful", "delightful", "superb", "charming", "moving", "brilliant")
BAD = ("dreadful", "boring", "awful", "clumsy", "tedious", "bland")
ADVERBS = ("really", "quite", "truly", "rather", "")
SUBJECTS = (("the dog", "the dogs"), ("the child", "the children"), ("my friend", "my friends"),
            ("the teacher", "the teachers"))
VERBS = (("chases", "chase"), ("sees", "see"), ("likes", "like"), ("finds", "find"))
OBJECTS = ("the ball", "a cat", "the old car", "a red kite", "the small bird")
PLACES = ("on the left", "on the right", "at the top", "at the bottom")


def sst2(rng: random.Random) -> dict:
    positive = rng.random() < 0.5
    negated = rng.random() < 0.3
    adj = rng.choice(GOOD if positive != negated else BAD)
    words = f"the {rng.choice(NOUNS)} was {'not ' if negated else ''}{rng.choice(ADVERBS)} {adj}"
    return {"sentence": " ".join(words.split()), "label": "positive" if positive else "negative"}


def mnli(rng: random.Random) -> dict:
    """Each form of hypothesis comes with more than one label, so only comparing it with the
    premise tells which: the same shape (or its kind, or its colour) at the same place entails,
    the same shape elsewhere contradicts, another shape, kind or colour is undetermined."""
    c, k, place = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(PLACES)
    premise = f"the {c} {k} is {place}"
    label = rng.choice(("yes", "no", "maybe"))
    form = rng.choice(("the", "a", "something")) if label != "no" else "the"
    if label == "no":
        return {"premise": premise, "hypothesis": f"the {c} {k} is {rng.choice([p for p in PLACES if p != place])}",
                "label": label}
    if label == "yes":
        colour, kind, at = c, k, place
    else:
        colour, kind = rng.choice([(x, y) for x in COLOURS for y in SHAPES if (x, y) != (c, k)])
        if form == "a":
            kind = rng.choice([y for y in SHAPES if y != k])
        elif form == "something":
            colour = rng.choice([x for x in COLOURS if x != c])
        at = rng.choice(PLACES)
    hyp = {"the": f"the {colour} {kind} is {at}", "a": f"a {kind} is {at}", "something": f"something {colour} is {at}"}
    return {"premise": premise, "hypothesis": hyp[form], "label": label}


def cola(rng: random.Random) -> dict:
    (one, many), (verb_s, verb_p) = rng.choice(SUBJECTS), rng.choice(VERBS)
    plural = rng.random() < 0.5
    words = [*(many if plural else one).split(), verb_p if plural else verb_s, *rng.choice(OBJECTS).split()]
    if rng.random() < 0.5:
        return {"sentence": " ".join(words), "label": "yes"}
    if rng.random() < 0.5:  # agreement broken
        words[len((many if plural else one).split())] = verb_s if plural else verb_p
    else:  # word order broken: the verb moved to the end
        verb = words.pop(len((many if plural else one).split()))
        words.append(verb)
    return {"sentence": " ".join(words), "label": "no"}


SYNONYMS = {"chases": "pursues", "sees": "spots", "likes": "enjoys", "finds": "discovers"}
PASSIVE = {"chases": "chased", "sees": "seen", "likes": "liked", "finds": "found"}


def mrpc(rng: random.Random) -> dict:
    """A paraphrase says the same in the passive or with a synonym; a non-paraphrase uses the
    same forms about another object, so only comparing the two sentences tells which."""
    (one, _), (verb, _) = rng.choice(SUBJECTS), rng.choice(VERBS)
    obj = rng.choice(OBJECTS)
    label = rng.choice(("yes", "no"))
    about = obj if label == "yes" else rng.choice([o for o in OBJECTS if o != obj])
    second = rng.choice((f"{about} is {PASSIVE[verb]} by {one}", f"{one} {SYNONYMS[verb]} {about}"))
    return {"sentence1": f"{one} {verb} {obj}", "sentence2": second, "label": label}


# ------------------------------------------------------------------ tables, sudoku, instructions

NAMES = ("anna", "ben", "cora", "dan", "eve", "finn", "gus", "hana", "ivo", "jun")
SPORTS = ("tennis", "chess", "rowing", "judo", "golf")
CITIES = ("oslo", "lima", "rome", "kyiv", "pune", "graz")


def fetaqa(rng: random.Random) -> dict:
    people = rng.sample(NAMES, 4)
    table = [(p, rng.choice(SPORTS), rng.choice(CITIES), str(rng.randint(18, 60))) for p in people]
    rows = " | ".join(f"{n} : {s} : {c} : {a}" for n, s, c, a in table)
    database = f"[table name] club members [table head] name : sport : city : age [table content] {rows}"
    name, sport, city, age = rng.choice(table)
    question, answer = rng.choice([(f"which sport does {name} play?", f"{name} plays {sport}."),
                                   (f"where does {name} live?", f"{name} lives in {city}."),
                                   (f"how old is {name}?", f"{name} is {age} years old.")])
    return {"database": database, "src": question, "tgt": answer}


def _candidates(grid: list[int], n: int, box: int, i: int) -> list[int]:
    r, c = divmod(i, n)
    seen = {grid[r * n + j] for j in range(n)} | {grid[j * n + c] for j in range(n)}
    br, bc = r - r % box, c - c % box
    seen |= {grid[(br + a) * n + bc + b] for a in range(box) for b in range(box)}
    return [d for d in range(1, n + 1) if d not in seen]


def _solutions(grid: list[int], n: int, box: int, limit: int = 2) -> int:
    """How many solutions the grid has, counting up to `limit` (most-constrained cell first)."""
    blanks = [i for i, v in enumerate(grid) if v == 0]
    if not blanks:
        return 1
    i = min(blanks, key=lambda j: len(_candidates(grid, n, box, j)))
    found = 0
    for d in _candidates(grid, n, box, i):
        grid[i] = d
        found += _solutions(grid, n, box, limit - found)
        grid[i] = 0
        if found >= limit:
            break
    return found


def _solved(n: int, box: int, rng: random.Random) -> list[int]:
    """A random solved grid: the canonical pattern with digits, bands, stacks, rows and columns shuffled."""
    digits = rng.sample(range(1, n + 1), n)
    def order():
        bands = rng.sample(range(box), box)
        return [b * box + r for b in bands for r in rng.sample(range(box), box)]
    rows, cols = order(), order()
    return [digits[(box * (r % box) + r // box + c) % n] for r in rows for c in cols]


def sudoku(rng: random.Random) -> dict:
    n, box = (4, 2) if rng.random() < 0.7 else (9, 3)
    solution = _solved(n, box, rng)
    puzzle, target = list(solution), rng.uniform(0.3, 0.6 if n == 4 else 0.5)
    for i in rng.sample(range(n * n), n * n):
        if sum(v == 0 for v in puzzle) >= target * n * n:
            break
        keep, puzzle[i] = puzzle[i], 0
        if _solutions(list(puzzle), n, box) != 1:
            puzzle[i] = keep
    def text(grid):
        return " | ".join(" : ".join(str(v) for v in grid[r * n:(r + 1) * n]) for r in range(n))
    return {"src": text(puzzle), "tgt": text(solution), "mask_ratio": round(sum(v == 0 for v in puzzle) / n / n, 2)}


WORDS = ("apple", "river", "stone", "cloud", "tiger", "lemon", "chair", "piano", "grass", "honey", "ocean",
         "tulip", "wagon", "zebra", "maple", "candle", "mango", "violin", "robin", "pepper", "castle", "forest",
         "basket", "rocket")
# (definition, operation) of each kind of sub-task; a sub-task is a kind on a word pool
OPERATIONS = {
    "last": ("Given a list of words, answer with the last word of the list.", lambda w: w[-1]),
    "first": ("Given a list of words, answer with the first word of the list.", lambda w: w[0]),
    "reverse": ("Given a list of words, answer with the same words in reverse order.", lambda w: " ".join(w[::-1])),
    "count": ("Given a list of words, answer with how many words the list has, in words.",
              lambda w: ("zero", "one", "two", "three", "four", "five")[len(w)]),
    "sort": ("Given a list of words, answer with the words sorted alphabetically.", lambda w: " ".join(sorted(w))),
}
POOLS = tuple(WORDS[i:i + 6] for i in range(0, len(WORDS), 6))


def held_out_pool(kind: str) -> int:
    """The one pool each kind is never trained on (a Latin square: kinds hold out different pools,
    so every pool is trained with most kinds and the words alone never tell which kind a row is)."""
    return sorted(OPERATIONS).index(kind) % len(POOLS)


def natural_instructions(rng: random.Random, held_out: bool) -> dict:
    kind = rng.choice(list(OPERATIONS))
    unseen = held_out_pool(kind)
    pool = POOLS[unseen if held_out else rng.choice([i for i in range(len(POOLS)) if i != unseen])]
    definition, op = OPERATIONS[kind]
    def example():
        words = rng.sample(pool, rng.randint(2, 5))
        return " ".join(words), op(words)
    shots = [example() for _ in range(2)]
    src, tgt = example()
    return {"instruction": f"Definition: {definition}",
            "examples": " ".join(f"Positive Example {k + 1} - Input: {x} . Output: {y} ." for k, (x, y) in
                                 enumerate(shots)),
            "src": f"Now complete the following example - Input: {src} . Output:", "tgt": tgt, "task_name": kind}


TEXT_TASKS = {"sst2": sst2, "mnli": mnli, "cola": cola, "mrpc": mrpc, "fetaqa": fetaqa, "sudoku": sudoku}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "catalogue")
    ap.add_argument("--scenes", type=int, default=2000, help="training rows of each task")
    ap.add_argument("--valid", type=int, default=100)
    ap.add_argument("--clips", type=int, default=400, help="video clips (both video tasks read them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    cap = int(os.environ.get("OFAC_MAX_ROWS") or 0) or None
    stamp = {"scenes": args.scenes, "valid": args.valid, "clips": args.clips, "seed": args.seed, "version": 2,
             "max_rows": cap}
    marker = args.out / "settings.json"
    if not args.force and marker.exists() and json.loads(marker.read_text()) == stamp:
        print(f"{args.out}: up to date")
        return
    for sub in ("images", "video"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    digits = digits_rows(args.out)
    rng = random.Random(args.seed)
    sizes = {"train": min(args.scenes, cap or args.scenes), "valid": min(args.valid, cap or args.valid)}
    clips = {"train": min(args.clips, cap or args.clips), "valid": min(args.valid, cap or args.valid)}
    first = {"train": 0, "valid": args.scenes}  # valid scenes and clips never trained on
    for part in ("train", "valid"):
        tasks: dict[str, list] = {}
        scenes = [scene(rng) for _ in range(sizes[part])]
        for j, shapes in enumerate(scenes):
            i = first[part] + j
            draw(args.out / "images" / f"{i}.png", shapes)
            for name, row in shape_rows(i, shapes, scenes[j - 1], rng).items():
                tasks.setdefault(name, []).append(row)
        for j in range(clips[part]):
            for name, row in video_rows(args.out, first[part] + j, rng).items():
                tasks.setdefault(name, []).append(row)
        for name, make in TEXT_TASKS.items():
            tasks[name] = [make(rng) for _ in range(sizes[part])]
        tasks["natural_instructions"] = [natural_instructions(rng, part == "valid") for _ in range(sizes[part])]
        tasks["image_classify"] = [{"image": r["img"], "label_name": r["label"]} for r in digits[part][:cap]]
        for name, rows in tasks.items():
            (args.out / f"{name}_{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    marker.write_text(json.dumps(stamp))
    print(f"{args.out}: {sizes['train']} train and {sizes['valid']} valid rows per task, {clips['train']} train "
          f"clips; {', '.join(sorted(tasks))}")


if __name__ == "__main__":
    main()
