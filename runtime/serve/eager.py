"""The PyTorch backend of `OFASys`: the checkpoint's weights in eager PyTorch, on the CPU or a GPU."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.collate import collate
from ..generate.eager import generate
from ..model.config import ModelConfig
from ..model.device import resolve_device
from ..model.network import EncoderDecoder
from ..store.checkpoint import latest_checkpoint, load_weights
from ..store.files import CheckpointError
from ..store.rundir import RunDir
from ..threads import govern


class TorchBackend:
    media = "torch"  # the preprocessors of images, audio and video (see preprocess.registry)

    def __init__(self, model: EncoderDecoder, weights: Path):
        self.model, self.weights = model, weights
        self.device = torch.device("cpu")

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best") -> "TorchBackend":
        files = RunDir(run_dir)
        if not files.has_setup:
            raise CheckpointError("E0110", "not a run directory (no config.json)", files.path,
                                  help="give the folder `ofac run` wrote (train { out })")
        weights = weights_of(files.path, checkpoint)
        model = EncoderDecoder(ModelConfig.from_dict(files.config()["model"]))
        load_weights(model, weights)
        return cls(model.eval(), weights)

    def to(self, device) -> None:
        self.device = resolve_device(str(device))
        self.model.to(self.device)

    def describe(self) -> str:
        return f"backend=torch, {self.weights.parent.name}"

    def adaptor_names(self) -> set[str]:
        return set(self.model.adaptors)

    def can_serve(self, task) -> None:
        """Any task whose adaptors the model has (checked when the instruction is compiled)."""

    def answer(self, samples, generation):
        """Batch `samples` and search: (hypotheses per sample, meta per sample)."""
        govern()
        batch = collate(samples).to(self.device)
        return generate(self.model, batch, generation), batch.meta


def weights_of(run_dir: Path, checkpoint: str) -> Path:
    """The model.safetensors of `checkpoint`: best, latest, or a checkpoint folder."""
    if checkpoint == "best" and (run_dir / "checkpoints" / "best" / "model.safetensors").exists():
        return run_dir / "checkpoints" / "best" / "model.safetensors"
    if checkpoint in ("best", "latest"):
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise CheckpointError("E0110", "the run directory holds no checkpoint yet", run_dir,
                                  help="train it with `ofac run` first")
        return latest / "model.safetensors"
    path = Path(checkpoint)
    path = path if path.name == "model.safetensors" else path / "model.safetensors"
    if not path.exists():
        raise CheckpointError("E0110", "no model.safetensors in the checkpoint", path,
                              help="give `best`, `latest`, or a folder under checkpoints/")
    return path
