"""Training one generalist model on every task of a task file (`ofac run`)."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ofac import __version__, ir

from .checkpoint import (CheckpointError, canonical_weights, latest_checkpoint, read_checkpoint, read_json,
                         rng_state, save_best, save_checkpoint, set_rng_state, write_json)
from .data.dataset import SkipReport, TaskData, column_lengths
from .data.loader import build_loader
from .data.mixing import TaskPlan
from .distributed import Parallel
from .errors import DataError, NotSupportedYet, ResourceError
from .evaluate import Scorer, closed_set, evaluate
from .metrics import LOWER_IS_BETTER
from .model import GeneralistModel, ModelConfig, token_losses
from .preview import run_vocab, task_data
from .spec import as_spec
from .tokenizer import Vocab


@dataclass
class RunResult:
    run_dir: Path
    step: int
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


def has_native_bf16() -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with bf16 matrix units (AVX512-BF16, AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise NotSupportedYet("`device = cuda` on a machine without a CUDA GPU",
                              help="use `--device cpu` (or `auto`)")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """None for fp32; torch.bfloat16 for bf16 autocast."""
    if requested == "fp32":
        return None
    if requested == "bf16" or (device.type == "cuda" or has_native_bf16()):
        return torch.bfloat16
    return None


def lr_lambda(steps: int, warmup: float, schedule: str):
    warm = int(warmup * steps) if warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, steps - warm))
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "polynomial":
            return 1.0 - progress
        return 1.0
    return factor


def _adaptors(tasks) -> list[str]:
    return sorted({op.op.split(".", 1)[1] for t in tasks for p in t.programs for op in p.ops
                   if op.family == "adapt" and op.get("side") == "encoder"})


class Trainer:
    def __init__(self, run, base_dir: Path | None = None, *, out: Path | None = None, steps: int | None = None,
                 resume: bool = False, device: str | None = None, precision: str | None = None,
                 parallel: str | None = None, log=None, on_record=None):
        """`run`: a CompiledFile (data paths relative to `base_dir`) or a RunSpec."""
        self.spec = as_spec(run, base_dir)
        self.base_dir = self.spec.base_dir
        opts = dict(self.spec.train)
        for key, value in (("steps", steps), ("device", device), ("precision", precision), ("parallel", parallel)):
            if value is not None:
                opts[key] = value
        self.opts = opts
        self.run = Path(os.path.normpath(Path(out) if out is not None else self.base_dir / opts["out"]))
        self.resume = resume
        self.device = resolve_device(opts["device"])
        self.dtype = resolve_precision(opts["precision"], self.device)
        self.log = log or (lambda msg: None)
        self.on_record = on_record or (lambda record: None)  # each step and validation record
        self._scorers: dict[str, Scorer] = {}
        self.par = Parallel()  # joined in fit(), when torchrun started this process
        self._replica = None  # rank 0's unsharded copy of an FSDP model, for validation

    # ------------------------------------------------------------------ setup

    def _config(self, vocab: Vocab) -> dict:
        ids = vocab.bin_ids
        bins = (ids[0], len(ids)) if ids and ids[-1] - ids[0] + 1 == len(ids) else (0, 0)
        cfg = ModelConfig.from_settings(self.spec.model, len(vocab), _adaptors(self.spec.irs), bins)
        return {"ofac_version": __version__, "model": cfg.to_dict(), "model_block": {k: v for k, v in self.spec.model.items() if not isinstance(v, tuple)},
                "tasks": [t.name for t in self.spec.tasks],
                "source": str(Path(self.spec.source).resolve()) if Path(self.spec.source).is_file() else self.spec.source,
                "train": {k: v for k, v in self.opts.items() if not isinstance(v, tuple)}}

    def _prepare_run_dir(self) -> tuple[Vocab, dict, Path | None]:
        ckpt = latest_checkpoint(self.run) if self.run.exists() else None
        if self.resume:
            if ckpt is None:
                raise CheckpointError("E0115", "nothing to resume: no checkpoint in the run directory", self.run,
                                      help="drop --resume to start a new run")
            vocab = Vocab.load(self.run / "tokenizer.json")
            saved = read_json(self.run / "config.json")
            config = json.loads(json.dumps(self._config(vocab)))  # compare in JSON form, as saved
            if saved["model"] != config["model"] or saved["tasks"] != config["tasks"]:
                raise CheckpointError("E0116", "the run directory belongs to another configuration (model or tasks "
                                      "differ)", self.run, help="resume with the task file that started this run, "
                                      "or give a new --out")
            return vocab, saved, ckpt
        if ckpt is not None or (self.run / "config.json").exists():
            raise CheckpointError("E0117", "the run directory already holds a run", self.run,
                                  help="add --resume to continue it, or give another --out; nothing was overwritten")
        from tokenizers import Tokenizer

        # rank 0 trains the tokenizer; every rank gets the same one
        text = self.par.broadcast(run_vocab(self.spec).tok.to_str() if self.par.main else None)
        vocab = Vocab(Tokenizer.from_str(text))
        return vocab, self._config(vocab), None

    def _write_run_dir(self, vocab: Vocab, config: dict, answers: dict[str, list[str]]) -> None:
        """Written only once the whole setup has succeeded: a failed start leaves nothing."""
        if not self.par.main:
            return
        self.run.mkdir(parents=True, exist_ok=True)
        vocab.save(self.run / ".tokenizer.json.tmp")
        (self.run / ".tokenizer.json.tmp").replace(self.run / "tokenizer.json")
        write_json(self.run / "programs.json", [ir.to_json(t) for t in self.spec.irs])
        write_json(self.run / "answers.json", answers)  # closed sets, for inference
        write_json(self.run / "config.json", config)

    def _plans(self, datas: dict[str, TaskData]) -> list[TaskPlan]:
        plans = []
        for task in self.spec.tasks:
            if task.name not in datas:
                continue
            data = datas[task.name]
            lengths = None
            if self.opts.get("bucket_by_length"):
                lengths = column_lengths(data, list(task.ir.get("inputs", ())))
            s = task.settings
            plans.append(TaskPlan(task.name, len(data), s["micro_batch_size"], s["update_freq"], s["weight"], lengths))
        return plans

    # ------------------------------------------------------------------ training

    def fit(self) -> RunResult:
        self.par = Parallel.from_env(self.opts["parallel"], self.device)
        self.device = self.par.device(self.device)
        if not self.par.main:  # rank 0 speaks for the run
            self.log, self.on_record = (lambda msg: None), (lambda record: None)
        try:
            s = self._start()
            try:
                return self._fit(s)
            except torch.OutOfMemoryError:
                raise ResourceError(f"a training step ran out of memory on {self.device} at step {s.step + 1}",
                                    help="lower micro_batch_size (and raise update_freq to keep the batch), or "
                                         "use a smaller model") from None
        finally:
            self.par.close()

    def _fit(self, s: "_Session") -> RunResult:
        try:
            pending: list[tuple[str, object]] = []  # the update's micro-batches
            for mixed in s.loader:
                s.skips.add(mixed.skipped)
                if mixed.batch is not None:
                    pending.append((s.names[mixed.task], mixed.batch))
                if mixed.last_of_update:
                    self._backward_update(s, pending)
                    pending = []
                    if not self._after_update(s, mixed.update + 1):
                        break
        except KeyboardInterrupt:
            s.interrupted = True
            if s.step > s.start and self.par.mode == "fsdp":  # the shards cannot be gathered any more
                self.log(f"interrupted at step {s.step}; --resume continues from the last saved checkpoint")
            elif s.step > s.start:
                self._save(s, s.step, collective=False)
                self.log(f"interrupted: saved step {s.step}; continue with --resume")
        for name in s.names:
            for epoch in range(1 + max(s.sampler.mixer.epoch)):
                summary = s.skips.epoch_summary(name, epoch)
                if summary:
                    self.log(summary)
        return RunResult(self.run, s.step, s.history, s.interrupted)

    def _start(self) -> "_Session":
        """Run directory, model, optimizer and schedule (restored on --resume), data, loader."""
        vocab, config, ckpt = self._prepare_run_dir()
        if self.par.mode == "fsdp" and self.opts.get("ema"):
            raise NotSupportedYet("`ema` with `parallel = fsdp`", help="use `parallel = ddp`, or train without ema")
        self.par.barrier()  # every rank has checked the run directory before rank 0 writes to it
        torch.manual_seed(self.opts["seed"])  # the same initial weights on every rank
        model = GeneralistModel(ModelConfig.from_dict(config["model"]))
        opt_state = state = None
        if ckpt is not None:
            opt_state, state = read_checkpoint(ckpt, model)
        if self.par.distributed:  # dropout draws differently on each rank
            torch.manual_seed(self.opts["seed"] + self.par.rank)
        try:
            model.to(self.device)
        except torch.OutOfMemoryError:
            raise ResourceError(f"a {model.num_parameters() / 1e6:.0f}M-parameter model does not fit on {self.device}",
                                help="choose a smaller `model { preset }` or fewer layers") from None
        model = self.par.wrap(model)
        opt, sched = self._optimizer(model)
        start, mixer_state = self._resume(ckpt, model, opt, sched, opt_state, state) if ckpt else (0, None)
        train = task_data(self.spec, None, "train", vocab)
        if not train:
            raise NotSupportedYet("a task file without training data", help="give tasks a `train = ...` file")
        names = [t.name for t in self.spec.tasks if t.name in train]
        try:
            loader, sampler = build_loader([train[n] for n in names], self._plans(train), policy=self.opts["mixing"],
                                           temperature=self.opts["temperature"], seed=self.opts["seed"],
                                           num_workers=self.opts["num_workers"], updates=self.opts["steps"],
                                           rank=self.par.rank, world=self.par.world, mixer_state=mixer_state,
                                           device=str(self.device))
        except ValueError as err:  # e.g. a dataset smaller than one micro-batch
            raise DataError("E0105", str(err), file=self.spec.source,
                            help="lower the task's micro_batch_size or give it more rows") from None
        valid = task_data(self.spec, None, "valid", vocab)
        answers = {n: closed_set(self.spec.task(n), train.get(n)) for n in names}
        for name in valid:  # how each task is scored: a metric that cannot work fails the start
            self._scorers[name] = Scorer(self.spec.task(name), vocab, answers.get(name))
        if ckpt is None:
            self._write_run_dir(vocab, config, {n: a for n, a in answers.items() if a is not None})
        model.train()
        ema = EMA(self.par.unwrap(model), self.opts["ema"]) if self.opts.get("ema") else None
        if ema is not None and ckpt is not None:
            ema.load(ckpt)
        return _Session(model, opt, sched, loader, sampler, names, {n: self._loss_spec(n) for n in names}, train,
                        valid, start=start, step=start, ema=ema)

    def _optimizer(self, model):
        decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on biases and norms
        other = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.opts["weight_decay"]},
                                 {"params": other, "weight_decay": 0.0}], lr=self.opts["lr"], betas=(0.9, 0.98))
        factor = lr_lambda(self.opts["steps"], self.opts["warmup"], self.opts["schedule"])
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def _resume(self, ckpt: Path, model, opt, sched, opt_state: dict, state: dict) -> tuple[int, dict]:
        try:
            self.par.load_optimizer_state(model, opt, opt_state)
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError("E0113", f"the optimizer state does not fit this model: {err}",
                                  ckpt / "optimizer.safetensors") from None
        ranks = state.get("rng_ranks") or []
        set_rng_state(ranks[self.par.rank] if len(ranks) == self.par.world else state["rng"])
        start = state["step"]
        sched.last_epoch = start  # the schedule continues where it stopped
        for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["lr"] = base * fn(start)
        sched._last_lr = [g["lr"] for g in opt.param_groups]
        self.log(f"resumed {self.run} at step {start}")
        return start, state["mixer"]

    def _after_update(self, s: "_Session", step: int) -> bool:
        """Step, log, validate, checkpoint; False to stop early."""
        self._update(s, s.totals)
        if s.ema is not None:
            s.ema.update(self.par.unwrap(s.model))
        s.step = step
        record = self._record(step, s.sched, s.totals, s.t0)
        self._publish(s, record)
        self.log(self._line(record, self.opts["steps"]))
        s.totals, s.t0 = self._zero_totals(), time.perf_counter()
        last = step == self.opts["steps"]
        if s.valid and (step % self.opts["eval_every"] == 0 or last):
            weights = self._full_weights(s) if self.par.mode == "fsdp" else None
            go_on = self._validate_and_track(s, step, weights) if self.par.main else None
            if not self.par.broadcast(go_on):  # rank 0 decides whether training goes on
                self._save(s, step)
                return False
        if step % self.opts["save_every"] == 0 or last:
            self._save(s, step)
        return True

    def _full_weights(self, s: "_Session") -> dict:
        """FSDP: gather the shards (every rank takes part) into rank 0's unsharded replica."""
        plain = self.par.unwrap(s.model)
        weights = self.par.model_state(s.model)
        if self.par.main:
            if self._replica is None:
                self._replica = GeneralistModel(plain.cfg).to(self.device)
            self._replica.load_state_dict(canonical_weights(self._replica, weights), strict=False)
        return weights

    def _validate_and_track(self, s: "_Session", step: int, weights: dict | None = None) -> bool:
        """Validate, keep the best weights, and say whether training should go on (patience).
        Rank 0 only; under FSDP on the replica `_full_weights` filled."""
        model = self._replica if weights is not None else self.par.unwrap(s.model)
        with (s.ema.swapped_in(model) if s.ema is not None else _null()):  # EMA weights are what is kept
            record = {"step": step, "valid": self.validate(model, s.valid, s.losses, train=s.train)}
            if s.best is None or self._score(record["valid"]) > s.best:
                save_best(self.run, step, canonical_weights(model, model.state_dict()), record)
        record["score"] = self._score(record["valid"])
        self._publish(s, record)
        self.log(f"step {step}: valid " + "; ".join(
            f"{t} " + " ".join(f"{k} {v:.3f}" for k, v in r.items()) for t, r in record["valid"].items()))
        if s.best is None or record["score"] > s.best:
            s.best, s.stale = record["score"], 0
        else:
            s.stale += 1
        if self.opts["patience"] and s.stale >= self.opts["patience"]:
            self.log(f"early stop at step {step}: no improvement in {s.stale} validations")
            return False
        return True

    def _publish(self, s: "_Session", record: dict) -> None:
        s.history.append(record)
        if self.par.main:
            self._append_metrics(record)
        self.on_record(record)

    def _score(self, valid: dict) -> float:
        """One number to pick the best checkpoint by: the mean of the tasks' metrics (signed so
        that higher is better), or minus the mean loss where a task has no decoded metric."""
        scores = []
        for task, r in valid.items():
            name = self.spec.task(task).get("metric")
            if name in r:
                scores.append(-r[name] if name in LOWER_IS_BETTER else r[name])
            else:
                scores.append(-r["loss"])
        return sum(scores) / max(1, len(scores))

    def _loss_spec(self, task: str) -> tuple[float, float]:
        (loss_op,) = self.spec.task(task).programs[0].find("loss")
        if loss_op.op != "loss.label_smoothed_ce":
            raise NotSupportedYet(f"`{loss_op.op}` (task `{task}`)")
        return loss_op.get("eps", 0.0), loss_op.get("weight", 1.0)

    @staticmethod
    def _zero_totals() -> dict:
        return {"loss": 0.0, "nll": 0.0, "tokens": 0, "per_task": {}}

    def _backward_update(self, s: "_Session", pending: list[tuple[str, object]]) -> None:
        """Forward and backward every micro-batch of one update; ranks meet on the last.
        `loss_mean = tokens`: the gradients are sums of token losses, divided by the update's
        token count in `_update`.  `loss_mean = tasks`: each task's token losses are divided here
        by its token count in the whole update (all its micro-batches on all ranks) and by the
        number of tasks in it, so the update's loss is the mean over tasks of each task's mean
        token loss: a task with 5-token targets weighs as much as one with 30."""
        tokens = [int(batch.loss_mask.sum()) for _, batch in pending]  # on the host: no device sync
        scales: dict[str, float] = {}
        if self.opts["loss_mean"] == "tasks":
            counts = dict.fromkeys(s.names, 0)
            for (task, _), n in zip(pending, tokens):
                counts[task] += n
            counts = dict(zip(s.names, self.par.all_sum(list(counts.values()))))
            present = sum(1 for n in counts.values() if n > 0)
            scales = {task: 1.0 / (n * present) for task, n in counts.items() if n > 0}
        for i, ((task, batch), n) in enumerate(zip(pending, tokens)):
            with self.par.sync(s.model, i == len(pending) - 1):
                self._accumulate(s.model, batch.to(self.device), n, s.losses[task], s.totals, task,
                                 scales.get(task, 1.0))

    def _accumulate(self, model, batch, n: int, spec, totals, task, scale: float) -> None:
        """Forward and backward one micro-batch of `n` target tokens, its loss times `scale`."""
        eps, weight = spec
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else _null()
        with autocast:
            logits = model(batch)
        loss, nll = token_losses(logits, batch.target, batch.loss_mask, eps)
        loss_sum = weight * loss.sum()
        (loss_sum * scale).backward()
        totals["loss"] += loss_sum.item()
        totals["nll"] += nll.detach().sum().item()
        totals["tokens"] += n
        t = totals["per_task"].setdefault(task, [0.0, 0])
        t[0] += nll.detach().sum().item()
        t[1] += n

    def _update(self, s: "_Session", totals: dict) -> None:
        """One optimizer step.  Each rank's gradients are sums of token losses (`loss_mean =
        tokens`; already divided by the update's task token counts under `tasks`); DDP / FSDP
        have averaged them over the ranks, so scaling by world / (all ranks' tokens) gives the
        gradient of the update's mean token loss, as one process would compute it."""
        self._sum_over_ranks(s, totals)
        tokens = 1 if self.opts["loss_mean"] == "tasks" else max(1, totals["tokens"])
        scale = self.par.world / tokens
        for p in s.model.parameters():
            if p.grad is not None:
                p.grad.mul_(scale)
        if self.opts["clip_norm"]:
            norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), self.opts["clip_norm"])
            totals["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        s.opt.step()
        s.sched.step()
        s.opt.zero_grad(set_to_none=True)

    def _sum_over_ranks(self, s: "_Session", totals: dict) -> None:
        """The update's loss and token counts over all ranks (one small all-reduce)."""
        if not self.par.distributed:
            return
        per = [totals["per_task"].get(n, [0.0, 0]) for n in s.names]
        flat = self.par.all_sum([totals["loss"], totals["nll"], totals["tokens"]] + [x for v in per for x in v])
        totals["loss"], totals["nll"], totals["tokens"] = flat[0], flat[1], int(flat[2])
        totals["per_task"] = {n: [flat[3 + 2 * i], int(flat[4 + 2 * i])] for i, n in enumerate(s.names)
                              if flat[4 + 2 * i] > 0}

    def _record(self, step, sched, totals, t0) -> dict:
        seconds = time.perf_counter() - t0
        return {"step": step, "lr": sched.get_last_lr()[0], "loss": totals["loss"] / max(1, totals["tokens"]),
                "nll": totals["nll"] / max(1, totals["tokens"]), "tokens": totals["tokens"],
                "tokens_per_s": totals["tokens"] / max(seconds, 1e-9),
                "tasks": {k: v[0] / max(1, v[1]) for k, v in totals["per_task"].items()},
                "task_tokens_per_s": {k: v[1] / max(seconds, 1e-9) for k, v in totals["per_task"].items()}}

    @staticmethod
    def _line(record: dict, steps: int) -> str:
        tasks = " ".join(f"{k}={v:.3f}" for k, v in record["tasks"].items())
        return (f"step {record['step']}/{steps} loss {record['loss']:.3f} lr {record['lr']:.2e} "
                f"{record['tokens_per_s']:.0f} tok/s | {tasks}")

    def _append_metrics(self, record: dict) -> None:
        with (self.run / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def _save(self, s: "_Session", step: int, collective: bool = True) -> None:
        """Checkpoint `step`.  Every rank calls it (FSDP gathers shards, each rank's RNG state
        is kept); rank 0 writes.  `collective=False` (after Ctrl-C, when the other ranks may be
        gone): rank 0 alone saves what it holds."""
        plain = self.par.unwrap(s.model)
        target = s.model if collective else plain
        weights = self.par.model_state(target)
        optimizer = self.par.optimizer_state(target, s.opt)
        rngs = self.par.gather(rng_state()) if collective else []
        mixer = s.sampler.state_before(step)
        if not self.par.main:
            return
        extra = {"ema.safetensors": s.ema.shadow} if s.ema is not None else {}
        state = {"mixer": mixer, "rng": rng_state(), "world": self.par.world}
        if len(rngs) > 1:
            state["rng_ranks"] = rngs
        save_checkpoint(self.run, step, canonical_weights(plain, weights), optimizer, state, self.opts["keep_last"],
                        extra)

    def validate(self, model, valid: dict[str, TaskData], losses=None, batch_size: int = 16,
                 train: dict[str, TaskData] | None = None) -> dict:
        """Per task on its whole valid split: teacher-forced loss and token accuracy, and the
        task's metric on outputs generated as its IR says (runtime/evaluate.py)."""
        out = {}
        for name, data in valid.items():
            if name not in self._scorers:  # once per run: a closed-set trie may read every train row
                task = self.spec.task(name)
                self._scorers[name] = Scorer(task, data.runner.vocab, closed_set(task, (train or {}).get(name)))
            out[name] = evaluate(model, data, self._scorers[name], self.device, batch_size).scores
        model.train()
        return out


@dataclass
class _Session:
    """The state of one fit: what is trained, what feeds it, and where it stands."""

    model: GeneralistModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    loader: object
    sampler: object
    names: list[str]
    losses: dict[str, tuple[float, float]]
    train: dict[str, TaskData]
    valid: dict[str, TaskData]
    start: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=lambda: Trainer._zero_totals())
    t0: float = field(default_factory=time.perf_counter)
    skips: SkipReport = field(default_factory=SkipReport)
    best: float | None = None
    stale: int = 0
    interrupted: bool = False
    ema: "EMA | None" = None


class EMA:
    """An exponential moving average of the weights (float32), updated after every step."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v.float(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def load(self, ckpt: Path) -> None:
        from safetensors.torch import load_file

        path = ckpt / "ema.safetensors"
        if not path.exists():
            raise CheckpointError("E0110", "the checkpoint has no EMA weights (the run was started without ema)",
                                  path, help="resume with the task file that started this run")
        loaded = load_file(str(path))
        for k in self.shadow:
            self.shadow[k].copy_(loaded[k])

    def swapped_in(self, model):
        ema = self

        class Swap:
            def __enter__(self):
                self.saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
                model.load_state_dict({k: v.to(self.saved[k].dtype) for k, v in ema.shadow.items()})

            def __exit__(self, *exc):
                model.load_state_dict(self.saved)
                return False
        return Swap()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
