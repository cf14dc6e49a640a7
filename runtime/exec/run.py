"""The IR executor: a task's program run on one data row, op by op in SSA order, each op
handled by its kind (`_Row.HANDLERS`, as torch.fx's interpreter does per node kind) and each
named op by its registered implementation.  It reads columns, preprocesses, fuses token groups
and assembles the encoder inputs and the output head's target.  Training, evaluation and both
inference backends call this, so they can never disagree about preprocessing.  No torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ofac.ir import Op, Program, TaskIR, verify

from ..errors import DataError, NotSupportedYet
from ..preprocess import registry
from ..preprocess.base import Context, Tokens
from ..preprocess.media import MediaError
from ..registry import attributes
from ..vocab.tokenizer import BOS, EOS
from .sample import EncoderInput, Sample
from .targets import TARGETS, ctc_of


class TaskRunner:
    """Runs one task's IR on rows.  `split` decides train-time randomness (masking, noise,
    augmentation); at `test` the decoder's data columns may be absent (they are predicted).
    `media`: which preprocessors decode images, audio and video (torch | numpy); `resources`:
    the run's learned codecs by modality (`{"image": ImageTokenizer}`), for output preprocessors."""

    def __init__(self, task: TaskIR, vocab, split: str = "train", media: str = "torch", resources: dict | None = None):
        self.preprocessors = registry(media)
        for p in task.programs:
            problems = verify(p)
            if problems:
                raise ValueError(f"invalid IR for task {task.task}: {problems}")
            for op in p.ops:  # every implementation exists and reads what the op says
                if op.kind == "preprocess":
                    self.preprocessors.check(op)
                elif op.kind == "target":
                    TARGETS.check(op)
            _check_packing(p)
        self.task, self.vocab, self.split = task, vocab, split
        self.resources = dict(resources or {})
        self._plans: list[_Plan] | None = None  # built on first use: the vocab may come later
        self.targets = tuple(task.get("targets", ()))
        first = task.programs[0]  # database columns travel to the metric (SQL is executed on them)
        self.databases = tuple(first.arg(op).get("column") for op in first.of_kind("preprocess")
                               if op.name == "database")
        self.references = task.get("references")  # the column of the metric's reference answers

    @property
    def plans(self) -> list["_Plan"]:
        if self._plans is None:
            if self.vocab is None:
                raise ValueError(f"task `{self.task.task}` has no vocabulary yet")
            self._plans = [_Plan(p, self.vocab, self.preprocessors) for p in self.task.programs]
        return self._plans

    def __call__(self, row: dict, rng: np.random.Generator, base_dir: Path | None = None,
                 where: tuple[str, int] = ("<data>", 0)) -> Sample:
        plan = self.plans[int(rng.integers(len(self.plans)))] if len(self.plans) > 1 else self.plans[0]
        ctx = Context(self.vocab, self.split, rng, base_dir, self.resources)
        return _Row(self, plan, row, ctx, where).sample()


def _check_packing(p: Program) -> None:
    """Packed fbank frames (`n_frames_per_step` > 1) are for speech targets: the encoder's audio
    adaptor reads 80-bin frames."""
    for op in p.of_kind("adapt"):
        pre = p.arg(op)
        if op.get("side") == "encoder" and pre.name == "audio" and (pre.get("n_frames_per_step") or 1) > 1:
            raise NotSupportedYet(f"`n_frames_per_step` > 1 on an encoder AUDIO input ({pre.where()})",
                                  help="leave it out: the encoder reads one fbank frame per step")


class _Plan:
    """What is worked out once per program rather than once per row: each op's attributes and
    implementation, and the tokens of the instruction's constant text."""

    def __init__(self, program: Program, vocab, preprocessors):
        self.program, self.ops = program, program.ops
        self.attrs = [attributes(op) for op in program.ops]
        self.impls = {op.id: preprocessors.get(op).run for op in program.of_kind("preprocess")}
        self.target = TARGETS.get(program.only("target")).run
        self.ctc = ctc_of(program, vocab)  # (segment, first phone id, phone tokens) of a CTC loss, or None
        self.const = {op.id: Tokens(vocab.encode(self.attrs[op.id]["text"]))
                      for op in program.of_kind("preprocess") if op.name == "text" and not op.args}


class _Row:
    """One row through one program: `values[op.id]` is each op's result."""

    def __init__(self, runner: TaskRunner, plan: _Plan, row: dict, ctx: Context, where):
        self.runner, self.plan, self.program = runner, plan, plan.program
        self.row, self.ctx, self.where = row, ctx, where
        self.values: dict[int, object] = {}
        self.images: dict[str, object] = {}  # image column -> its Geometry (for postprocessing boxes)
        self.pixels: dict[str, object] = {}  # target image column -> its pixels (for image metrics)
        self.waveforms: dict[str, object] = {}  # target audio column -> (waveform, rate) (speech metrics)
        self.motions: dict[str, object] = {}  # motion column -> (features, known) unnormalized (motion metrics)

    def fail(self, op: Op, message: str, column: str | None = None, help: str = "") -> DataError:
        return DataError("E0104", message, file=self.where[0], row=self.where[1], column=column,
                         help=help, op=op.where())

    def sample(self) -> Sample:
        for op in self.program.ops:
            self.values[op.id] = self.HANDLERS[op.kind](self, op)
        meta = {"row": self.where[1], "images": self.images,
                "targets": {c: self.row.get(c) for c in self.runner.targets}}
        if self.pixels:
            meta["pixels"] = self.pixels
        if self.waveforms:
            meta["waveforms"] = self.waveforms
        if self.motions:
            meta["motions"] = self.motions
        if self.runner.references is not None:
            meta["references"] = self.row.get(self.runner.references)
        if self.runner.databases:
            meta["databases"] = {c: self.row.get(c) for c in self.runner.databases}
        target = self.program.only("target")
        return Sample(self.runner.task.task, self.values[self.program.only("encoder").id], target.name,
                      self.values[target.id], meta)

    # ------------------------------------------------------------------ op kinds

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
        if op.id in self.plan.const:
            return self.plan.const[op.id]
        src = self.program.arg(op)
        value, more = self.values[src.id], [self.values[a] for a in op.args[1:]]
        run, attrs = self.plan.impls[op.id], self.plan.attrs[op.id]
        try:
            if value is None:
                return Tokens([])
            if src.get("repeated"):
                if not isinstance(value, (list, tuple)):
                    raise ValueError(f"a repeated slot reads a list, found {type(value).__name__}")
                return [run(v, attrs, self.ctx, *more) for v in value]
            out = run(value, attrs, self.ctx, *more)
        except NotSupportedYet:
            raise
        except (ValueError, TypeError, KeyError, MediaError, RuntimeError, OSError) as err:
            raise self.fail(op, f"cannot preprocess {src.get('modality')}: {err}", column=src.get("column")) from None
        found = getattr(out, "meta", None) or {}
        if "geometry" in found:
            self.images[src.get("column")] = found["geometry"]
        if "pixels" in found:
            self.pixels[src.get("column")] = found["pixels"]
        if "waveform" in found and self.ctx.split != "train":  # what a speech metric hears (not shipped in training)
            self.waveforms[src.get("column")] = found["waveform"]
        if "reference" in found:  # a clip's features as read, for motion metrics (not in training)
            self.motions[src.get("column")] = found["reference"]
        return out

    def repeat(self, op: Op) -> list[Tokens]:
        lists = [self.values[a] for a in op.args]
        plain = [isinstance(v, Tokens) for v in lists]
        lengths = {len(v) for v, p in zip(lists, plain) if not p}
        if len(lengths) > 1:
            cols = [self.program.arg(self.program.ops[a]).get("column") for a, p in zip(op.args, plain) if not p]
            raise self.fail(op, f"the repeated columns {', '.join(cols)} have different lengths {sorted(lengths)}",
                            help="a repetition group takes one element of each list per repetition")
        n = lengths.pop() if lengths else 0
        return [v if p else v[k] for k in range(n) for v, p in zip(lists, plain)]

    def pieces(self, group: Op) -> list[tuple[Tokens, bool]]:
        """A group's token pieces in order, each with whether it carries loss."""
        flags = self.plan.attrs[group.id].get("loss") or [False] * len(group.args)
        out = []
        for a, flag in zip(group.args, flags):
            v = self.values[a]
            out += [(t, flag) for t in v] if isinstance(v, list) else [(v, flag)]
        return out

    def adapt(self, op: Op):
        """An encoder input; on the decoder side the head's target is built from it (`target`)."""
        src = self.program.arg(op)
        if op.get("side") == "decoder":
            return src
        if src.kind == "group":
            attrs = self.plan.attrs[src.id]
            ids = [i for t, _ in self.pieces(src) for i in t.fed]
            bos, eos, limit = attrs["bos"], attrs["eos"], attrs.get("max_length")
            if limit:
                ids = ids[: max(0, limit - bos - eos)]
            return EncoderInput(op.name, np.asarray([BOS] * bos + ids + [EOS] * eos, dtype=np.int64))
        feats = self.values[src.id]
        return EncoderInput(op.name, feats.tensor, feats.norm, feats.mask_border)

    def encoder(self, op: Op) -> list[EncoderInput]:
        return [self.values[a] for a in op.args]

    def target(self, op: Op):
        try:
            return self.plan.target(self, self.values[op.args[0]])
        except ValueError as err:  # e.g. speech shorter than one decoder step
            src = self.program.ops[self.program.arg(self.program.arg(op)).args[0]]
            raise self.fail(op, f"cannot build the {op.name} target: {err}", column=src.get("column")) from None

    def later(self, op: Op) -> None:
        """loss, generate, postprocess: read by training, generation and scoring, not per row."""
        return None

    HANDLERS = {"read": read, "preprocess": preprocess, "repeat": repeat, "group": lambda self, op: op,
                "adapt": adapt, "encoder": encoder, "target": target, "loss": later, "generate": later,
                "postprocess": later}
