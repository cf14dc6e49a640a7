"""How one training process takes part in a run: alone, as one DDP rank, or as one FSDP2 rank.

`ofac run --nproc N` starts N copies of itself through torchrun (`torch.distributed.run`);
each copy finds RANK / WORLD_SIZE / LOCAL_RANK in its environment and builds a `Parallel`
from them.  A script started by `torchrun` directly does the same through the Python API.

Everything the trainer needs to know about the other processes goes through this class:
wrapping the model, switching gradient synchronisation off between the micro-batches of one
update, summing statistics, and gathering full weights / optimizer state for rank 0 to save
(state dicts are keyed by parameter name, the same for every mode, so a run may be resumed
with another number of processes)."""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from ..errors import NotSupportedYet

MODES = ("ddp", "fsdp")
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def torchrun(nproc: int, command: list[str], console=None) -> int:
    """Run `python COMMAND...` as `nproc` processes on this machine through torchrun
    (`torch.distributed.run`); the exit status (0 when every process succeeded)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # the cores are shared: one intra-op thread pool per process, sized to its share
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                         "--no-python", sys.executable, *command])
    try:
        run(args)
    except SignalException:  # Ctrl-C: torchrun passed it on; rank 0 saved and said how to resume
        return 130
    except ChildFailedError as err:
        codes = sorted({f.exitcode for f in err.failures.values()})
        if console is not None and codes != [1]:  # exit 1: the process reported its diagnostic itself
            console.print(f"error: {len(err.failures)} of {nproc} training processes failed "
                          f"(exit {', '.join(map(str, codes))})", style="bold red")
        return codes[-1] if codes and codes[-1] > 0 else 1
    return 0


@dataclass
class Parallel:
    mode: str = "single"  # single | ddp | fsdp
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, mode: str, device: torch.device) -> "Parallel":
        """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); alone otherwise."""
        if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
            return cls()
        if mode not in MODES:
            raise NotSupportedYet(f"parallel mode `{mode}`", help=f"use one of {', '.join(MODES)}")
        p = cls(mode, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(p.local_rank)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return p

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, device: torch.device) -> torch.device:
        """Each rank of a CUDA run trains on its own GPU."""
        if device.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank)
        return device

    # ------------------------------------------------------------------ the model

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module training calls: the model itself, DDP around it, or the model with its
        blocks and then itself sharded by FSDP2 `fully_shard` (in place)."""
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            # tasks use different adaptors, so a micro-batch leaves some parameters unused
            return DistributedDataParallel(model, find_unused_parameters=True)
        if self.mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in [*model.encoder, *model.decoder]:
                fully_shard(block)
            fully_shard(model)
        return model

    @staticmethod
    def unwrap(model: torch.nn.Module) -> torch.nn.Module:
        return getattr(model, "module", model)

    def sync(self, model: torch.nn.Module, on: bool):
        """A context in which backward does (on) or does not (off) reduce gradients across
        ranks: off for every micro-batch of an update but its last."""
        if self.mode == "ddp" and not on:
            return model.no_sync()
        if self.mode == "fsdp":
            model.set_requires_gradient_sync(on)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ communication

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    # ------------------------------------------------------------------ full state (collective)

    def model_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Full weights by parameter name, on the CPU (on rank 0; empty elsewhere under FSDP)."""
        return get_model_state_dict(model, options=_FULL)

    def optimizer_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
        """Full optimizer state keyed by parameter name (on rank 0; empty elsewhere under FSDP)."""
        return get_optimizer_state_dict(model, opt, options=_FULL)

    def load_optimizer_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        """Parameters a run never used (an adaptor no sampled task needed yet) have no state."""
        set_optimizer_state_dict(model, opt, optim_state_dict=state,
                                 options=StateDictOptions(full_state_dict=True, strict=False))
