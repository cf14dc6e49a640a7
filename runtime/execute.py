"""Executing the input side of a task's IR on one data row: read columns, preprocess,
fuse token groups (BOS/EOS, truncation, loss mask, forced prefix), and assemble the
encoder segments and the decoder sequence.  Training, evaluation and inference all call
this, so they can never disagree about preprocessing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ofac.ir import Op, Program, TaskIR, verify

from .data.media import MediaError
from .errors import DataError, NotSupportedYet
from .preprocess import registry
from .preprocess.base import Context, Features, Tokens
from .preprocess.box import box as box_tokens
from .preprocess.box import parse_box
from .tokenizer import BOS, EOS

TOKEN_OUTPUTS = ("text", "box", "box_text")
_IMAGE_OPS = ("preprocess.image", "preprocess.imagenet", "preprocess.imagepretrain")


@dataclass
class Segment:
    """One encoder input: its adaptor and data (token ids as an int64 array; uint8 pixels or
    fbank frames as the preprocessor made them: torch tensors, or numpy arrays in the torch-free
    runtime)."""

    adaptor: str
    data: object
    norm: tuple | None = None  # (mean, std) for pixels, applied on the device
    mask_border: int = 0

    def __iter__(self):  # `adaptor, data = segment`
        return iter((self.adaptor, self.data))


@dataclass
class Sample:
    task: str
    encoder: list[Segment]  # in encoder order
    decoder_input: list[int]  # BOS + content (fed: noised where noise applies)
    target: list[int]  # content + EOS (clean)
    loss_mask: list[bool]  # per target position
    prefix: int  # leading target tokens that are forced, not predicted, at inference
    meta: dict = field(default_factory=dict)


def by_adaptor(samples: list[Sample]) -> tuple[dict[str, list[Segment]], list[list[tuple[str, int]]]]:
    """The encoder segments of a batch grouped by adaptor (each group is stacked into one
    input), and per example its layout: (adaptor, index in that group) in encoder order."""
    groups: dict[str, list[Segment]] = {}
    layout = []
    for s in samples:
        row = []
        for seg in s.encoder:
            bucket = groups.setdefault(seg.adaptor, [])
            row.append((seg.adaptor, len(bucket)))
            bucket.append(seg)
        layout.append(row)
    return groups, layout


class TaskRunner:
    """Runs one task's IR on rows.  `split` decides train-time randomness (masking, noise,
    augmentation); at `test` the decoder's data columns may be absent (they are predicted).
    `media`: which preprocessors decode images, audio and video (torch | numpy)."""

    def __init__(self, task: TaskIR, vocab, split: str = "train", media: str = "torch"):
        self.registry = registry(media)
        for p in task.programs:
            problems = verify(p)
            if problems:
                raise ValueError(f"invalid IR for task {task.task}: {problems}")
        output = task.get("output")
        if output not in TOKEN_OUTPUTS:
            raise NotSupportedYet(f"a decoder target producing `{output}` (task `{task.task}`)",
                                  help="token targets (TEXT, BOX and their groups) are supported")
        for p in task.programs:
            for op in p.ops:
                if op.family == "preprocess" and op.op.split(".", 1)[1] not in self.registry and op.op != "preprocess.box":
                    raise NotSupportedYet(f"`{op.op}` (task `{task.task}`, {op.span})")
        self.task, self.vocab, self.split = task, vocab, split
        self._plans: list[_Plan] | None = None  # built on first use: the vocab may come later
        self.targets = tuple(task.get("targets", ()))
        ops = task.programs[0].ops  # database columns travel to the metric (SQL is executed on them)
        self.databases = tuple(ops[op.args[0]].get("column") for op in ops if op.op == "preprocess.database")

    @property
    def plans(self) -> list["_Plan"]:
        if self._plans is None:
            if self.vocab is None:
                raise ValueError(f"task `{self.task.task}` has no vocabulary yet")
            self._plans = [_Plan(p, self.vocab) for p in self.task.programs]
        return self._plans

    def __call__(self, row: dict, rng: np.random.Generator, base_dir: Path | None = None,
                 where: tuple[str, int] = ("<data>", 0)) -> Sample:
        plan = self.plans[int(rng.integers(len(self.plans)))] if len(self.plans) > 1 else self.plans[0]
        run = _Run(self, plan, row, Context(self.vocab, self.split, rng, base_dir), where)
        return run.sample()


class _Plan:
    """What can be worked out once per program rather than once per example: each op's
    attributes as a dict, the tokens of the instruction's constant text, and which boxes
    belong to which image."""

    def __init__(self, program: Program, vocab):
        self.program = program
        self.ops = program.ops
        self.attrs = [dict(op.attrs) for op in program.ops]
        self.const: dict[int, Tokens] = {}
        self.boxes_of: dict[int, list[Op]] = {}  # image read id -> its box ops
        self.image_of: dict[int, Op] = {}  # image read id -> its image preprocess op
        for op in program.ops:
            if op.op == "preprocess.text" and not op.args:
                self.const[op.id] = Tokens(vocab.encode(op.get("text")))
            elif op.op == "preprocess.box":
                self.boxes_of.setdefault(op.args[1], []).append(op)
            elif op.op in _IMAGE_OPS:
                self.image_of[op.args[0]] = op


class _Run:
    def __init__(self, runner: TaskRunner, plan: _Plan, row: dict, ctx: Context, where):
        self.runner, self.plan, self.program = runner, plan, plan.program
        self.row, self.ctx, self.where = row, ctx, where
        self.values: dict[int, object] = dict(plan.const)
        self.images: dict[str, dict] = {}  # column -> image meta (for postprocessing boxes)

    def fail(self, op: Op, message: str, column: str | None = None, help: str = "") -> DataError:
        return DataError("E0104", message, file=self.where[0], row=self.where[1], column=column,
                         help=help, op=f"%{op.id} {op.op} from {op.span}")

    def sample(self) -> Sample:
        ops = self.program.ops
        for op in ops:
            if op.op == "read.column":
                self.values[op.id] = self.read(op)
        encoder = target = None
        for op in ops:
            fam = op.family
            if fam == "preprocess":
                if op.id not in self.values:  # an image may already have run for its boxes
                    self.values[op.id] = self.preprocess(op)
            elif fam == "tokens.repeat":
                self.values[op.id] = self.repeat(op)
            elif fam == "tokens.group":
                self.values[op.id] = op
            elif fam == "adapt":
                self.values[op.id] = (op.op.split(".", 1)[1], op.args[0])
            elif fam == "encoder.concat":
                encoder = [self.segment(a) for a in op.args]
            elif fam == "decoder.target":
                target = self.decoder(ops[self.values[op.args[0]][1]])
        dec_in, tgt, mask, prefix = target
        meta = {"row": self.where[1], "images": self.images,
                "targets": {c: self.row.get(c) for c in self.runner.targets}}
        if self.runner.databases:
            meta["databases"] = {c: self.row.get(c) for c in self.runner.databases}
        return Sample(self.runner.task.task, encoder, dec_in, tgt, mask, prefix, meta)

    # ------------------------------------------------------------------ ops

    def read(self, op: Op):
        col = op.get("column")
        if col in self.row and self.row[col] is not None:
            return self.row[col]
        if op.get("side") == "decoder" and self.ctx.split == "test":
            return None  # predicted, not read
        cols = ", ".join(map(str, self.row)) or "none"
        raise self.fail(op, f"missing column `{col}`", column=col,
                        help=f"this row has columns: {cols}; the instruction reads `{col}`")

    def preprocess(self, op: Op):
        name = op.op.split(".", 1)[1]
        attrs = self.plan.attrs[op.id]
        src = self.program.ops[op.args[0]]
        col = src.get("column")
        value = self.values[op.args[0]]
        try:
            if name == "box":
                return self.box(op)
            if value is None:
                return Tokens([])
            if src.get("repeated"):
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"a repeated slot reads a list, found {type(value).__name__}")
                return [self.runner.registry[name](v, attrs, self.ctx) for v in value]
            if op.op in _IMAGE_OPS:
                return self.image(op, attrs, value, col)
            return self.runner.registry[name](value, attrs, self.ctx)
        except NotSupportedYet:
            raise
        except (ValueError, TypeError, KeyError, MediaError, RuntimeError, OSError) as err:
            raise self.fail(op, f"cannot preprocess {src.get('modality')}: {err}", column=col) from None

    def image(self, op: Op, attrs: dict, value, col: str) -> Features:
        # every box of this image is transformed together with it
        box_ops = self.plan.boxes_of.get(op.args[0], ())
        boxes, slices = [], []
        for b in box_ops:
            raw = self.values[b.args[0]]
            items = [] if raw is None else (list(raw) if self.program.ops[b.args[0]].get("repeated") else [raw])
            parsed = [parse_box(x) for x in items]
            slices.append((b, len(boxes), len(boxes) + len(parsed), self.program.ops[b.args[0]].get("repeated"),
                           raw is None))
            boxes += parsed
        feats = self.runner.registry[op.op.split(".", 1)[1]](value, attrs, self.ctx, boxes=boxes)
        self.images[col] = {k: v for k, v in feats.meta.items() if k != "boxes"}
        for b, lo, hi, repeated, absent in slices:
            battrs = self.plan.attrs[b.id]
            toks = [box_tokens(bx, battrs, self.ctx, feats.meta["size"]) for bx in feats.meta.get("boxes", [])[lo:hi]]
            self.values[("box", b.id)] = toks if repeated else (Tokens([]) if absent else toks[0])
        return feats

    def box(self, op: Op):
        """Boxes are produced by their image's transform; run it now if it comes later."""
        if ("box", op.id) not in self.values:
            image_op = self.plan.image_of.get(op.args[1])
            if image_op is None:
                raise NotSupportedYet("a BOX whose IMAGE is not an encoder input",
                                      help="put the IMAGE slot left of `->`")
            self.values[image_op.id] = self.preprocess(image_op)
        return self.values[("box", op.id)]

    def repeat(self, op: Op) -> list[Tokens]:
        lists = [self.values[a] for a in op.args]
        plain = [isinstance(v, Tokens) for v in lists]
        lengths = {len(v) for v, p in zip(lists, plain) if not p}
        if len(lengths) > 1:
            cols = [self.program.ops[self.program.ops[a].args[0]].get("column") for a, p in zip(op.args, plain)
                    if not p]
            raise self.fail(op, f"the repeated columns {', '.join(cols)} have different lengths {sorted(lengths)}",
                            help="a repetition group takes one element of each list per repetition")
        n = lengths.pop() if lengths else 0
        return [v if p else v[k] for k in range(n) for v, p in zip(lists, plain)]

    # ------------------------------------------------------------------ assembly

    def pieces(self, group: Op) -> list[tuple[Tokens, bool]]:
        flags = group.get("loss") or [False] * len(group.args)
        out = []
        for a, flag in zip(group.args, flags):
            v = self.values[a]
            out += [(t, flag) for t in v] if isinstance(v, list) else [(v, flag)]
        return out

    def segment(self, adapt_id: int):
        adaptor, src = self.values[adapt_id]
        src_op = self.program.ops[src]
        if src_op.family == "tokens.group":
            ids = [i for t, _ in self.pieces(src_op) for i in t.fed]
            limit = src_op.get("max_length")
            bos, eos = src_op.get("bos"), src_op.get("eos")
            if limit:
                ids = ids[: max(0, limit - bos - eos)]
            ids = [BOS] * bos + ids + [EOS] * eos
            return Segment(adaptor, np.asarray(ids, dtype=np.int64))
        feats = self.values[src]
        return Segment(adaptor, feats.tensor, feats.norm, feats.mask_border)

    def decoder(self, group: Op):
        pieces = self.pieces(group)
        fed, clean, loss = [], [], []
        for t, flag in pieces:
            fed += t.fed if len(t.fed) == len(t.ids) else t.ids  # span masking never applies to targets
            clean += t.ids
            loss += [flag] * len(t.ids)
        limit = group.get("max_length")
        if limit:
            keep = max(0, limit - 2)
            fed, clean, loss = fed[:keep], clean[:keep], loss[:keep]
        prefix = 0
        while prefix < len(loss) and not loss[prefix]:
            prefix += 1
        any_loss = any(flag for _, flag in pieces)
        return [BOS] + fed, clean + [EOS], loss + [any_loss], prefix
