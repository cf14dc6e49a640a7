"""The torch-free runtime: an `ofac export` folder answered by ONNX Runtime and numpy.

    from ofac.runtime.deploy import load
    model = load("run/onnx")                        # or ofac.load("run/onnx")
    model.inference("caption", data={"img": "scene.png"}).text

What runs: the IR of every task (programs.json) drives the same TaskRunner as training, with
the numpy media preprocessors (`media.py`: Pillow resize, numpy Kaldi fbank); samples are
batched into numpy arrays (`engine.collate`); the exported graphs run in ONNX Runtime
(`engine.OrtModel`); the search is `search.py` on numpy (`NumpyArrays`: greedy, beam, sampling,
closed-set trie, n-gram blocking); postprocessing is the shared `postprocess.py`.  Importing
this package, loading a folder and answering import no torch (tested with torch blocked):
the deployment needs numpy, onnxruntime, tokenizers, Pillow (images), soundfile (audio) and
PyAV (video), and the pure-Python compiler for new instructions."""
from __future__ import annotations

from pathlib import Path

from ..answer import Answerer, read_run_files
from ..files import CheckpointError, read_json
from ..search import NumpyArrays, search
from .engine import ExportError, OrtModel, collate, encoder_inputs

__all__ = ["Deployed", "ExportError", "load"]


class Deployed(Answerer):
    """A model exported by `ofac export`, answered by ONNX Runtime on the CPU."""

    media = "numpy"

    def __init__(self, folder: Path, model: OrtModel, config: dict):
        vocab, programs, answers = read_run_files(folder)
        super().__init__(folder, vocab, config, programs, answers, folder / "manifest.json")
        self.model = model

    @property
    def device(self) -> str:
        return "cpu"

    def to(self, device) -> "Deployed":
        if str(device) not in ("cpu", "auto"):
            raise ValueError("the onnx backend runs on the CPU (ONNX Runtime's CPU provider)")
        return self

    def __repr__(self) -> str:
        return f"Deployed({self.run_dir}, tasks={self.tasks}, backend=onnx)"

    def adaptor_names(self) -> set[str]:
        return set(self.model.adaptors)

    def _can_serve(self, task) -> None:
        self.model.encoder_for(encoder_inputs(task))

    def _answer(self, samples, generation):
        batch = collate(samples)
        return search(self.model, batch, generation, NumpyArrays(generation.seed)), batch.meta


def load(path: str | Path, threads: int | None = None) -> Deployed:
    """An export folder (or a run directory holding one in `onnx/`) -> a model to answer with."""
    path = Path(path)
    folder = path / "onnx" if (path / "onnx" / "manifest.json").exists() else path
    if not (folder / "manifest.json").exists():
        raise CheckpointError("E0110", "not an ONNX export folder (no manifest.json)", folder,
                              help="write one with `ofac export RUN_DIR --out DIR`")
    model = OrtModel(folder, threads)
    return Deployed(folder, model, read_json(folder / "config.json"))
