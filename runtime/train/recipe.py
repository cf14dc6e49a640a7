"""Training one generalist model on every task of a run (`ofac run`, `Trainer().fit`), as a
recipe: `setup` (run directory, vocabulary, the image tokenizer of image outputs (stage 0,
`tokenizers.py`), model, optimizer and schedule, data), `train` (the
loop of updates), `validate`, `save`, `cleanup`.  The update's arithmetic is `update.py`, the
schedule `schedule.py`, validation `validation.py`, the EMA `ema.py`, the run directory
`store/rundir.py`, the settings `options.py`."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ofac import __version__

from ..codec.speech import frame_width
from ..data.corpus import run_vocab
from ..data.dataset import SkipReport, column_lengths
from ..data.loader import build_loader
from ..data.mixing import TaskPlan
from ..data.scan import scan
from ..data.tasks import as_definition, task_data
from ..errors import DataError, NotSupportedYet, ResourceError
from ..evaluate.scorer import answer_trie, closed_set
from ..model.config import ModelConfig
from ..model.device import resolve_device, resolve_precision
from ..model.network import EncoderDecoder
from ..store.checkpoint import (
    canonical_weights,
    latest_checkpoint,
    load_weights,
    read_checkpoint,
    rng_state,
    save_best,
    save_checkpoint,
    set_rng_state,
)
from ..store.files import CheckpointError
from ..store.rundir import RunDir
from ..threads import govern
from ..vocab.tokenizer import Vocab
from . import tokenizers, update
from .distributed import Parallel
from .ema import EMA
from .options import TrainOptions, max_steps
from .schedule import build_optimizer, resume_schedule
from .validation import Best, Validation


@dataclass
class RunResult:
    run_dir: Path
    step: int
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


def encoder_adaptors(tasks) -> list[str]:
    return sorted({op.name for t in tasks for p in t.programs for op in p.of_kind("adapt")
                   if op.get("side") == "encoder"})


def output_heads(tasks) -> list[str]:
    return sorted({t.head for t in tasks})


class TrainingRun:
    def __init__(self, run, base_dir: Path | None = None, *, out: Path | None = None, steps: int | None = None,
                 resume: bool = False, device: str | None = None, precision: str | None = None,
                 parallel: str | None = None, log=None, on_record=None):
        """`run`: a CompiledFile (data paths relative to `base_dir`) or a RunDefinition."""
        self.run = as_definition(run, base_dir)
        self.options = TrainOptions.from_settings(self.run.train, steps=steps, device=device, precision=precision,
                                                  parallel=parallel)
        self.dir = RunDir(os.path.normpath(Path(out) if out is not None else self.run.base_dir / self.options.out))
        self.resume = resume
        self.device = resolve_device(self.options.device)
        self.dtype = resolve_precision(self.options.precision, self.device)
        self.log = log or (lambda msg: None)
        self.on_record = on_record or (lambda record: None)  # each step and validation record
        self.par = Parallel()  # joined in fit(), when torchrun started this process
        self.validation = Validation(self.run, self.device)
        self._replica = None  # rank 0's unsharded copy of an FSDP model, for validation

    # ------------------------------------------------------------------ the recipe

    def fit(self) -> RunResult:
        self.par = Parallel.from_env(self.options.parallel, self.device)
        self.device = self.validation.device = self.par.device(self.device)
        if not self.par.main:  # rank 0 speaks for the run
            self.log, self.on_record = (lambda msg: None), (lambda record: None)
        try:
            if max_steps() is not None and max_steps() == self.options.steps:
                self.log(f"OFAC_MAX_STEPS caps this run at {self.options.steps} steps")
            self.setup()
            try:
                return self.train()
            except torch.OutOfMemoryError:
                raise ResourceError(f"a training step ran out of memory on {self.device} at step {self.step + 1}",
                                    help="lower micro_batch_size (and raise update_freq to keep the batch), or "
                                         "use a smaller model") from None
        finally:
            self.cleanup()

    def setup(self) -> None:
        """Run directory, model, optimizer and schedule (restored on --resume), data, loader."""
        o = self.options
        scan(self.run, log=self.log)  # every bad cell a cheap read finds, at once, before the run directory is touched
        vocab, config, ckpt = self._run_dir()
        if self.par.mode == "fsdp" and o.ema:
            raise NotSupportedYet("`ema` with `parallel = fsdp`", help="use `parallel = ddp`, or train without ema")
        self.par.barrier()  # every rank has checked the run directory before rank 0 writes to it
        self.resources = self._resources(ckpt is not None)
        torch.manual_seed(o.seed)  # the same initial weights on every rank
        model = EncoderDecoder(ModelConfig.from_dict(config["model"]))
        opt_state = state = None
        if ckpt is not None:
            opt_state, state = read_checkpoint(ckpt, model)
        elif o.init:  # a second stage: the earlier run's weights, a fresh optimizer and schedule
            start_from = self._init_checkpoint()
            load_weights(model, start_from / "model.safetensors")
            self.log(f"initialized from {start_from}")
        if self.par.distributed:  # dropout draws differently on each rank
            torch.manual_seed(o.seed + self.par.rank)
        try:
            model.to(self.device)
        except torch.OutOfMemoryError:
            raise ResourceError(f"a {model.num_parameters() / 1e6:.0f}M-parameter model does not fit on {self.device}",
                                help="choose a smaller `model { preset }` or fewer layers") from None
        self.model = self.par.wrap(model)
        self.opt, self.sched = build_optimizer(self.model, o)
        self.start, mixer_state = self._restore(ckpt, opt_state, state) if ckpt else (0, None)
        self.step = self.start
        self.train_data = task_data(self.run, "train", vocab, self.resources)
        if not self.train_data:
            raise NotSupportedYet("a task file without training data", help="give tasks a `train = ...` file")
        self.names = [t.name for t in self.run.tasks if t.name in self.train_data]
        self.loader, self.sampler = self._loader(mixer_state)
        self.valid_data = task_data(self.run, "valid", vocab, self.resources)
        answers = {n: closed_set(self.run.task(n), self.train_data[n]) for n in self.names}
        for name in self.valid_data:  # how each task is scored: a metric that cannot work fails the start
            self.validation.scorer(name, vocab, answers=answers.get(name), resources=self.resources)
        if ckpt is None and self.par.main:
            self.dir.write_setup(vocab, self.run.irs, answers={n: a for n, a in answers.items() if a is not None},
                                 config=config)
        self.losses = {n: update.TaskLoss.of(self.run.task(n), answer_trie(self.run.task(n), vocab, answers[n]),
                                             self._loss_context(n, vocab))
                       for n in self.names}
        self.model.train()
        self.ema = EMA(self.par.unwrap(self.model), o.ema) if o.ema else None
        if self.ema is not None and ckpt is not None:
            self.ema.load(ckpt, self.par.unwrap(self.model))
        self.best, self.history, self.skips = Best(o.patience), [], SkipReport()
        self.totals, self.t0, self.interrupted = update.Totals(), time.perf_counter(), False

    def train(self) -> RunResult:
        """Updates until the last step (or early stopping); Ctrl-C saves and stops."""
        try:
            pending: list[tuple[str, object]] = []  # the update's micro-batches
            for mixed in self.loader:
                self.skips.add(mixed.skipped)
                if mixed.batch is not None:
                    pending.append((self.names[mixed.task], mixed.batch))
                if mixed.last_of_update:
                    update.backward(self.par, self.model, pending, self.losses, self.totals, self.device, self.dtype,
                                    self.options.loss_mean)
                    pending = []
                    if not self._after_update(mixed.update + 1):
                        break
        except KeyboardInterrupt:
            self.interrupted = True
            if self.step > self.start and self.par.mode == "fsdp":  # the shards cannot be gathered any more
                self.log(f"interrupted at step {self.step}; --resume continues from the last saved checkpoint")
            elif self.step > self.start:
                self.save(self.step, collective=False)
                self.log(f"interrupted: saved step {self.step}; continue with --resume")
        for name in self.names:
            for epoch in range(1 + max(self.sampler.mixer.epoch)):
                summary = self.skips.epoch_summary(name, epoch)
                if summary:
                    self.log(summary)
        return RunResult(self.dir.path, self.step, self.history, self.interrupted)

    def validate(self, step: int) -> bool:
        """Score every task, keep the best weights, and say whether training should go on
        (patience).  Rank 0 only; under FSDP on the replica `_full_weights` filled."""
        model = self._replica if self.par.mode == "fsdp" else self.par.unwrap(self.model)
        with (self.ema.swapped_in(model) if self.ema is not None else contextlib.nullcontext()):
            record = {"step": step, "valid": self.validation(model, self.valid_data, self.train_data)}
            record["score"] = self.validation.score(record["valid"])
            if self.best.improves(record["score"]):
                save_best(self.dir.path, step, canonical_weights(model, model.state_dict()),
                          {k: v for k, v in record.items() if k != "score"})
        self._publish(record)
        self.log(f"step {step}: valid " + "; ".join(
            f"{t} " + " ".join(f"{k} {v:.3f}" for k, v in r.items()) for t, r in record["valid"].items()))
        if not self.best.record(record["score"]):
            self.log(f"early stop at step {step}: no improvement in {self.best.stale} validations")
            return False
        return True

    def save(self, step: int, collective: bool = True) -> None:
        """Checkpoint `step`.  Every rank calls it (FSDP gathers shards, each rank's RNG state
        is kept); rank 0 writes.  `collective=False` (after Ctrl-C, when the other ranks may be
        gone): rank 0 alone saves what it holds."""
        plain = self.par.unwrap(self.model)
        target = self.model if collective else plain
        weights = self.par.model_state(target)
        optimizer = self.par.optimizer_state(target, self.opt)
        rngs = self.par.gather(rng_state()) if collective else []
        mixer = self.sampler.state_before(step)
        if not self.par.main:
            return
        extra = {EMA.FILE: self.ema.shadow} if self.ema is not None else {}
        state = {"mixer": mixer, "rng": rng_state(), "world": self.par.world}
        if len(rngs) > 1:
            state["rng_ranks"] = rngs
        save_checkpoint(self.dir.path, step, canonical_weights(plain, weights), optimizer, state,
                        self.options.keep_last, extra)

    def cleanup(self) -> None:
        self.par.close()

    # ------------------------------------------------------------------ setup parts

    def _resources(self, resuming: bool) -> dict:
        """The run's learned codecs (stage 0): rank 0 trains the image tokenizer and counts the
        speech statistics, the others load them once they are written."""
        found = {}
        if self.par.main:
            found["image"] = tokenizers.prepare(self.run, self.dir.path, self.log, resuming)
            found["audio"] = tokenizers.prepare_speech(self.run, self.dir.path, self.log, resuming)
            found["motion"] = tokenizers.prepare_motion(self.run, self.dir.path, self.log, resuming)
        self.par.barrier()
        if not self.par.main:
            from ..codec.tokenizer import run_resources

            return run_resources(self.dir.path)
        return {k: v for k, v in found.items() if v is not None}

    def _config(self, vocab: Vocab) -> dict:
        ids = vocab.bin_ids
        bins = (ids[0], len(ids)) if ids and ids[-1] - ids[0] + 1 == len(ids) else (0, 0)
        codec = tokenizers.codec_config(self.run)
        codes = (vocab.code_ids[0], len(vocab.code_ids)) if codec is not None else (0, 0)
        cfg = ModelConfig.from_settings(self.run.model, len(vocab), encoder_adaptors(self.run.irs), bins,
                                        output_heads(self.run.irs), codes, codec.grid if codec is not None else 0,
                                        frame_width(self.run), tokenizers.motion_width(self.run))
        source = Path(self.run.source)
        return {"ofac_version": __version__, "model": cfg.to_dict(), "tasks": [t.name for t in self.run.tasks],
                "model_block": {k: v for k, v in self.run.model.items() if not isinstance(v, tuple)},
                "image_tokenizer_block": {k: v for k, v in self.run.image_tokenizer.items() if k != "path"},
                "source": str(source.resolve()) if source.is_file() else self.run.source,
                "train": self.options.to_dict(), "export": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in self.run.export.items()}}

    def _init_dir(self) -> Path:
        return Path(os.path.normpath(self.run.base_dir / self.options.init))

    def _init_checkpoint(self) -> Path:
        """`train { init = RUN }`: RUN's best weights, else its latest checkpoint's."""
        run = self._init_dir()
        best = run / "checkpoints" / "best"
        found = best if (best / "model.safetensors").exists() else latest_checkpoint(run) if run.is_dir() else None
        if found is None:
            raise CheckpointError("E0110", "`init` names a run directory without weights", run,
                                  help="give `train { init = ... }` a run directory that has trained "
                                       "(its checkpoints/best or checkpoints/latest)")
        return found

    def _loss_context(self, name: str, vocab: Vocab) -> dict:
        """What a loss that runs the model needs of the run: for SCST the vocabulary, the target
        column and a CIDEr-D scorer whose document frequencies are the training references'."""
        task = next(t for t in self.run.tasks if t.name == name)
        if task.ir.programs[0].only("loss").name != "scst":
            return {}
        if self.par.distributed:
            raise NotSupportedYet("`scst` with more than one process", help="train the SCST stage in one process")
        from ..evaluate.metrics import CiderD

        column = task.ir.get("targets")[0]
        refs_column = task.settings.get("references") or column
        data = self.train_data[name]
        refs = [row.get(refs_column) or row.get(column) for row in map(data.readable, range(len(data)))
                if row is not None]
        return {"vocab": vocab, "column": column, "cider": CiderD([r for r in refs if r])}

    def _run_dir(self) -> tuple[Vocab, dict, Path | None]:
        ckpt = latest_checkpoint(self.dir.path) if self.dir.path.exists() else None
        if self.resume:
            self.dir.check_resumable(ckpt)
            vocab = self.dir.vocab()
            return vocab, self.dir.check_same_run(self._config(vocab)), ckpt
        self.dir.check_new(ckpt)
        from tokenizers import Tokenizer

        # rank 0 trains the tokenizer; every rank gets the same one (`init`: the earlier run's)
        if self.options.init and not self.run.model.get("tokenizer"):
            path = self._init_dir() / "tokenizer.json"
            if not path.exists():
                raise CheckpointError("E0110", "`init` names a directory without a tokenizer.json", path.parent,
                                      help="give `train { init = ... }` the run directory of an earlier `ofac run`")
            vocab = Vocab.load(path)
            return vocab, self._config(vocab), None
        text = self.par.broadcast(run_vocab(self.run).tok.to_str() if self.par.main else None)
        vocab = Vocab(Tokenizer.from_str(text))
        return vocab, self._config(vocab), None

    def _restore(self, ckpt: Path, opt_state: dict, state: dict) -> tuple[int, dict]:
        try:
            self.par.load_optimizer_state(self.model, self.opt, opt_state)
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError("E0113", f"the optimizer state does not fit this model: {err}",
                                  ckpt / "optimizer.safetensors") from None
        ranks = state.get("rng_ranks") or []
        set_rng_state(ranks[self.par.rank] if len(ranks) == self.par.world else state["rng"])
        start = state["step"]
        resume_schedule(self.opt, self.sched, start)
        self.log(f"resumed {self.dir.path} at step {start}")
        return start, state["mixer"]

    def _loader(self, mixer_state: dict | None):
        o, plans = self.options, []
        for task in self.run.tasks:
            if task.name in self.train_data:
                data = self.train_data[task.name]
                lengths = column_lengths(data, list(task.ir.get("inputs", ()))) if o.bucket_by_length else None
                s = task.settings
                plans.append(TaskPlan(task.name, len(data), s["micro_batch_size"], s["update_freq"], s["weight"],
                                      lengths, None if data.every_row_each_epoch else data.epoch_rows))
        try:
            return build_loader([self.train_data[n] for n in self.names], plans, policy=o.mixing,
                                temperature=o.temperature, seed=o.seed, num_workers=o.num_workers, updates=o.steps,
                                rank=self.par.rank, world=self.par.world, mixer_state=mixer_state,
                                device=str(self.device))
        except ValueError as err:  # e.g. a dataset smaller than one micro-batch
            raise DataError("E0105", str(err), file=self.run.source,
                            help="lower the task's micro_batch_size or give it more rows") from None

    # ------------------------------------------------------------------ the loop's parts

    def _after_update(self, step: int) -> bool:
        """Step, log, validate, checkpoint; False to stop early."""
        o = self.options
        update.step(self.par, self.model, self.opt, self.sched, self.totals, self.names, o.loss_mean, o.clip_norm)
        govern(self.log)  # threads follow the cores other processes leave free
        if self.ema is not None:
            self.ema.update(self.par.unwrap(self.model))
        self.step = step
        record = self._record(step)
        self._publish(record)
        self.log(_line(record, o.steps))
        self.totals, self.t0 = update.Totals(), time.perf_counter()
        last = step == o.steps
        if self.valid_data and (step % o.eval_every == 0 or last):
            if self.par.mode == "fsdp":
                self._full_weights()
            go_on = self.validate(step) if self.par.main else None
            if not self.par.broadcast(go_on):  # rank 0 decides whether training goes on
                self.save(step)
                return False
        if step % o.save_every == 0 or last:
            self.save(step)
        return True

    def _full_weights(self) -> None:
        """FSDP: gather the shards (every rank takes part) into rank 0's unsharded replica."""
        plain = self.par.unwrap(self.model)
        weights = self.par.model_state(self.model)
        if self.par.main:
            if self._replica is None:
                self._replica = EncoderDecoder(plain.cfg).to(self.device)
            self._replica.load_state_dict(canonical_weights(self._replica, weights), strict=False)

    def _publish(self, record: dict) -> None:
        self.history.append(record)
        if self.par.main:
            self.dir.append_metrics(record)
        self.on_record(record)

    def _record(self, step: int) -> dict:
        t, seconds = self.totals, time.perf_counter() - self.t0
        return {"step": step, "lr": self.sched.get_last_lr()[0], "loss": t.loss / max(1, t.units),
                "nll": t.nll / max(1, t.units), "tokens": t.units, "tokens_per_s": t.units / max(seconds, 1e-9),
                "tasks": {k: v[0] / max(1, v[1]) for k, v in t.per_task.items()},
                "task_tokens_per_s": {k: v[1] / max(seconds, 1e-9) for k, v in t.per_task.items()}}


def _line(record: dict, steps: int) -> str:
    tasks = " ".join(f"{k}={v:.3f}" for k, v in record["tasks"].items())
    return (f"step {record['step']}/{steps} loss {record['loss']:.3f} lr {record['lr']:.2e} "
            f"{record['tokens_per_s']:.0f} tok/s | {tasks}")
