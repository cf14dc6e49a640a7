"""Answering instructions: `OFASys`, a trained generalist model (every task of its run, and
new instructions it can serve), whatever runs the network.  It holds what every backend shares
(the run's IR, tokenizer and closed sets; compiling and checking new instructions; rows ->
samples -> generation -> outputs) and leaves two things to its backend: which media
preprocessors build the samples, and how a list of samples is batched and searched.

  eager.TorchBackend     PyTorch: torch tensors on any device, the checkpoint's weights
  deployed.OnnxBackend   ONNX Runtime: numpy arrays, the exported graphs; imports no torch

Both run the same TaskRunner on the same IR, the same search (`generate/search.py`) and the
same postprocessing, so they answer alike.  Nothing here imports torch."""
from __future__ import annotations

import json
from pathlib import Path

from ofac.compiler import compile_instruction
from ofac.diagnostics import Diagnostic, Severity
from ofac.ir import TaskIR

from ..codec.tokenizer import run_resources
from ..data.rows import TaskData, samples_of
from ..data.sources import open_source
from ..errors import DataError, RunError
from ..evaluate.scorer import Scorer, cleaned_answers
from ..exec.run import TaskRunner
from ..store.rundir import RunDir
from .output import Output, _output  # noqa: F401  (Output: also this module's name for it)


class InferenceError(RunError):
    """An instruction this checkpoint cannot answer; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self._all = list(diagnostics)
        self.diagnostic = diagnostics[0]
        super().__init__("\n".join(d.message + (f"\n  help: {d.help}" if d.help else "") for d in diagnostics))

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self._all


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL / CSV / TSV / Parquet file for `ofac infer --input`."""
    source = open_source(str(path))
    rows = []
    for j in range(len(source)):
        try:
            rows.append(source.row(j))
        except DataError:
            raise
        except (ValueError, json.JSONDecodeError) as err:
            raise DataError("E0102", f"malformed row: {err}", file=str(path), row=j + 1) from None
    return rows


class OFASys:
    """A trained generalist model: every task of its run, and new instructions it can serve.
    `OFASys.from_pretrained(run_dir)` loads one (`ofac.load` too); `backend` runs its network."""

    def __init__(self, folder: str | Path, backend):
        files = RunDir(folder)
        self.run_dir, self.backend = files.path, backend
        self.config, self.vocab = files.config(), files.vocab()
        self.programs, self.answers = files.programs(), files.answers()
        self.resources = run_resources(folder, backend.media)  # the learned codecs of its outputs
        self._compiled: dict[str, TaskIR] = {}
        self._scorers: dict[tuple, Scorer] = {}
        self._runners: dict[int, TaskRunner] = {}  # by id of a TaskIR this object keeps

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, checkpoint: str = "best", device: str | None = None,
                        backend: str = "torch") -> "OFASys":
        """`checkpoint`: `best` (the best validation; the latest checkpoint when the run never
        validated), `latest`, or a checkpoint folder.  `backend="onnx"`: `run_dir` is a folder
        `ofac export` wrote (or a run directory holding one in `onnx/`), run by ONNX Runtime
        without importing torch."""
        if backend == "onnx":
            from .deployed import OnnxBackend

            folder, engine = OnnxBackend.load(run_dir)
        elif backend == "torch":
            from .eager import TorchBackend  # the one import of torch here: this backend needs it

            folder, engine = Path(run_dir), TorchBackend.load(run_dir, checkpoint)
        else:
            raise ValueError(f"unknown backend {backend!r} (torch or onnx)")
        system = cls(folder, engine)
        return system.to(device) if device else system

    @property
    def tasks(self) -> list[str]:
        return list(self.programs)

    @property
    def device(self):
        return self.backend.device

    @property
    def weights(self) -> Path:
        return self.backend.weights

    def to(self, device) -> "OFASys":
        self.backend.to(device)
        return self

    def __repr__(self) -> str:
        return f"OFASys({self.run_dir}, tasks={self.tasks}, {self.backend.describe()})"

    # ------------------------------------------------------------------ instructions

    def task(self, instruction: str) -> TaskIR:
        """The IR of a trained task by name, or of a new instruction compiled for this model."""
        if instruction in self.programs:
            return self.programs[instruction]
        if instruction not in self._compiled:
            block = self.config.get("model_block") or {}
            image = self.config.get("image_tokenizer_block") or {}
            task, diags = compile_instruction(instruction, task="instruction",
                                              model=tuple((k, v) for k, v in block.items() if v is not None),
                                              image_tokenizer=tuple(image.items()))
            errors = [d for d in diags if d.severity is Severity.ERROR]
            if task is None or errors:
                raise InferenceError(errors or diags)
            self._check(task)
            self._compiled[instruction] = task
        return self._compiled[instruction]

    def _check(self, task: TaskIR) -> None:
        """Can this model serve the instruction?  Its encoder adaptors, its box bins, its image
        tokenizer."""
        have = self.backend.adaptor_names()
        problems = []
        for op in task.programs[0].ops:
            if op.kind == "adapt" and op.get("side") == "encoder" and op.name not in have:
                problems.append(Diagnostic(
                    "E0118", Severity.ERROR, f"this model has no `{op.name}` adaptor: it was trained on "
                    f"{', '.join(sorted(have))} inputs only (slot at {op.span})", None,
                    help=f"use an input modality the model knows, or train it on a task that uses `{op.name}`"))
            bins = op.get("bins") if op.kind in ("preprocess", "postprocess") else None
            if bins and bins > len(self.vocab.bin_ids):
                problems.append(Diagnostic(
                    "E0118", Severity.ERROR, f"the instruction quantizes boxes to {bins} bins; this model's "
                    f"vocabulary has {len(self.vocab.bin_ids)} (slot at {op.span})", None,
                    help="leave box_bins at the run's value"))
            if op.kind == "postprocess" and op.name == "image":
                tok = self.resources.get("image")
                want = (op.get("size"), op.get("grid"), op.get("codes"))
                if tok is None or want != (tok.cfg.size, tok.cfg.grid, tok.cfg.codes):
                    have = (f"its image tokenizer makes {tok.cfg.size}px images of {tok.cfg.grid}x{tok.cfg.grid} "
                            f"codes out of {tok.cfg.codes}") if tok is not None else "it has no image tokenizer"
                    problems.append(Diagnostic(
                        "E0118", Severity.ERROR, f"this model cannot generate the instruction's image: {have} "
                        f"(slot at {op.span})", None,
                        help="generate images with a model trained on an image task (its image tokenizer's sizes)"))
        if problems:
            raise InferenceError(problems)

    # ------------------------------------------------------------------ answering

    def inference(self, instruction: str, data: dict | list[dict], beam_size: int | None = None,
                  max_len: int | None = None, min_len: int | None = None, len_penalty: float | None = None,
                  no_repeat_ngram_size: int | None = None, sampling: bool | None = None, top_k: int | None = None,
                  top_p: float | None = None, temperature: float | None = None, closed_set: list[str] | None = None,
                  batch_size: int = 16, seed: int | None = None, base_dir: str | Path | None = None,
                  progress=None, rerank=None, steps: int | None = None, guidance: float | None = None,
                  length: int | None = None):
        """Answer `instruction` (a task name or an instruction) for one row (a dict: returns one
        Output) or many (a list: returns a list).  Media paths resolve against `base_dir`
        (default: the current directory).  `progress(n)` is called with rows done.
        `rerank(outputs, row) -> scores`: reorders each row's n-best by a scorer of your own
        (OFASys reranks generated images with CLIP); the scores replace the model's.  A MOTION
        target samples with `steps` DDIM steps and guidance weight `guidance` (OFASys'
        guidance_weight), `length` frames when the row gives no reference clip."""
        single = isinstance(data, dict)
        rows = [data] if single else list(data)
        task = self.task(instruction)
        self.backend.can_serve(task)
        # a closed set given here constrains any text output (cleaned as the target was, so an
        # uncased task's answers are its lower-cased words); else the task's own (from training)
        answers = cleaned_answers(task, closed_set) if closed_set is not None else self.answers.get(task.task)
        settings = dict(beam=beam_size, max_len=max_len, min_len=min_len, len_penalty=len_penalty,
                        no_repeat_ngram_size=no_repeat_ngram_size, sampling=sampling, top_k=top_k, top_p=top_p,
                        temperature=temperature, seed=seed, steps=steps, guidance=guidance, length=length)
        scorer = self._scorer(task, answers, settings)
        if id(task) not in self._runners:
            self._runners[id(task)] = TaskRunner(task, self.vocab, "test", media=self.backend.media,
                                                 resources=self.resources)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        rows_data = TaskData(self._runners[id(task)], [open_source(rows, base_dir=base)])
        image_column = next((op.get("column") for op in task.programs[0].of_kind("read")
                             if op.get("modality") == "IMAGE"), None)
        outputs: list[Output] = []
        for lo in range(0, len(rows), batch_size):
            hi = min(lo + batch_size, len(rows))
            samples = samples_of(rows_data, lo, hi)  # as validation builds them
            hyps_of, metas = self.backend.answer(samples, scorer.generation)
            for i, (hyps, meta) in enumerate(zip(hyps_of, metas)):
                n_best = [_output(scorer.output(h.tokens, meta), h.score) for h in hyps] or [Output()]
                if rerank is not None and hyps:
                    for o, s in zip(n_best, rerank(n_best, rows[lo + i])):
                        o.score = float(s)
                    n_best.sort(key=lambda o: -o.score)
                best = n_best[0]
                best.n_best = n_best
                if image_column is not None:
                    best.source, best.base_dir = rows[lo + i].get(image_column), base
                outputs.append(best)
            if progress is not None:
                progress(hi)
        return outputs[0] if single else outputs

    def _scorer(self, task: TaskIR, answers, settings: dict) -> Scorer:
        """A task's Scorer for these answers and settings: its closed-set trie and generation
        config are built once."""
        key = (id(task), tuple(answers) if answers else None, tuple(settings.items()))
        if key not in self._scorers:
            if len(self._scorers) > 64:
                self._scorers.clear()
            self._scorers[key] = Scorer(task, self.vocab, answers, resources=self.resources, **settings)
        return self._scorers[key]
