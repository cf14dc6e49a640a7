"""Checkpoints of a run directory (`rundir.py` has the rest of it).  Nothing here ever
unpickles: weights and optimizer tensors are safetensors, everything else is JSON.  Every write
goes to a temporary name first and is renamed into place, so a killed run never leaves a half
checkpoint.

    RUN/checkpoints/step-00000100/{model.safetensors, optimizer.safetensors, state.json}
    RUN/checkpoints/latest   the name of the newest complete checkpoint
    RUN/checkpoints/best     the weights of the best validation so far
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import CheckpointError, read_json, write_atomic, write_json  # noqa: F401 (re-exported)


def rng_state() -> dict:
    return {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}


def set_rng_state(state: dict) -> None:
    raw = base64.b64decode(state["torch"])
    torch.set_rng_state(torch.frombuffer(bytearray(raw), dtype=torch.uint8))


def canonical_weights(model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One entry per distinct parameter or buffer (a module shared under two names, like the
    token embedding inside the text adaptor, is saved once), contiguous, on the CPU."""
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    return {n: state[n].detach().cpu().contiguous() for n in names}


def _optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict keyed by parameter name (torch.distributed.checkpoint's form)
    -> safetensors tensors `NAME::KEY` and JSON for the rest."""
    tensors, scalars = {}, {}
    for name, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{name}::{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{name}::{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        name, k = key.split("::", 1)
        state.setdefault(name, {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run: Path, step: int, weights: dict, optimizer: dict, state: dict, keep_last: int = 2,
                    extra: dict[str, dict] | None = None) -> Path:
    """Write checkpoint `step` completely under a temporary name, rename it into place,
    then point `latest` at it and prune old ones.  `weights`: canonical_weights(); `optimizer`:
    a state dict keyed by parameter name."""
    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = ckdir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    for filename, named in (extra or {}).items():  # e.g. ema.safetensors
        save_file({k: v.contiguous() for k, v in named.items()}, str(tmp / filename))
    write_json(tmp / "state.json", {**state, "step": step, "optimizer": meta, "rng": state.get("rng") or rng_state()})
    final = ckdir / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_atomic(ckdir / "latest", name)
    names = sorted(p.name for p in ckdir.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in names[:-keep_last]:
        shutil.rmtree(ckdir / old, ignore_errors=True)
    return final


def latest_checkpoint(run: Path) -> Path | None:
    pointer = run / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run / "checkpoints" / pointer.read_text().strip()
    if not (path / "state.json").exists():
        raise CheckpointError("E0112", "the latest checkpoint is incomplete", path,
                              help="delete checkpoints/latest to fall back, or start a new run")
    return path


def renamed(tensors: dict, model) -> dict:
    """Tensors saved under a parameter's earlier name (`model.RENAMED`: old -> new), also as
    `NAME::KEY` optimizer entries, under today's name."""
    moves = getattr(model, "RENAMED", {})
    out = {}
    for key, value in tensors.items():
        name, sep, rest = key.partition("::")
        out[moves.get(name, name) + sep + rest] = value
    return out


def load_weights(model, path: Path) -> None:
    """Load a model.safetensors into `model`, which must have exactly its parameters."""
    try:
        weights = renamed(load_file(str(path)), model)
    except (OSError, SafetensorError) as err:
        raise CheckpointError("E0113", f"unreadable weights: {err}", path) from None
    expected = set(canonical_weights(model, model.state_dict()))
    missing, unexpected = expected - set(weights), set(weights) - expected
    if missing or unexpected:
        raise CheckpointError("E0114", f"the weights do not fit this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})", path,
                              help="the checkpoint belongs to another model configuration")
    shapes = [n for n, t in model.state_dict().items() if n in weights and weights[n].shape != t.shape]
    if shapes:
        raise CheckpointError("E0114", f"the weights do not fit this model (shape of {shapes[0]})", path,
                              help="the checkpoint belongs to another model configuration")
    model.load_state_dict(weights, strict=False)


def read_checkpoint(path: Path, model) -> tuple[dict, dict]:
    """Load the weights into `model`; return (optimizer state keyed by parameter name, the
    checkpoint's state.json)."""
    load_weights(model, path / "model.safetensors")
    state = read_json(path / "state.json")
    try:
        tensors = renamed(load_file(str(path / "optimizer.safetensors")), model)
    except (OSError, SafetensorError) as err:
        raise CheckpointError("E0113", f"unreadable optimizer state: {err}", path / "optimizer.safetensors") from None
    meta = dict(state["optimizer"], scalars=renamed(state["optimizer"]["scalars"], model))
    return _optimizer_state(tensors, meta), state


def save_best(run: Path, step: int, weights: dict, record: dict) -> None:
    """The weights of the best validation so far, in checkpoints/best (replaced atomically)."""
    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    tmp = ckdir / f".best.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    write_json(tmp / "validation.json", {**record, "step": step})
    old = ckdir / f".best.old-{os.getpid()}"
    if (ckdir / "best").exists():
        os.replace(ckdir / "best", old)
    os.replace(tmp, ckdir / "best")
    shutil.rmtree(old, ignore_errors=True)
