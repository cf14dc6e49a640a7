"""The ONNX backend of `OFASys`: an `ofac export` folder answered by ONNX Runtime and numpy.

    import ofac
    model = ofac.load("run/onnx")                   # or OFASys.from_pretrained(..., backend="onnx")
    model.inference("caption", data={"img": "scene.png"}).text

What runs: the IR of every task (programs.json) drives the same TaskRunner as training, with
the numpy media preprocessors (`preprocess/numpy_media.py`: Pillow resize, numpy Kaldi fbank);
samples are batched into numpy arrays (`onnx.collate`); the exported graphs run in ONNX Runtime
(`onnx.OrtModel`); the search is `generate/search.py` on numpy (`NumpyArrays`: greedy, beam,
sampling, closed-set trie, n-gram blocking), and for speech the frames loop of
`generate/speech.py` over the frames head's graphs; postprocessing is the shared
`evaluate/postprocess.py` (speech vocoded by the numpy Griffin-Lim).  Loading a folder and
answering import no torch (tested with torch blocked): the deployment needs numpy, onnxruntime,
tokenizers, Pillow (images), soundfile (audio) and PyAV (video), and the pure-Python compiler for
new instructions."""
from __future__ import annotations

from pathlib import Path

from ..generate import diffusion
from ..generate.diffusion import DiffusionConfig
from ..generate.search import NumpyArrays, search
from ..generate.speech import SpeechConfig, speak
from ..store.files import CheckpointError
from .onnx import OrtModel, collate, encoder_inputs


class OnnxBackend:
    media = "numpy"

    def __init__(self, model: OrtModel):
        self.model = model
        self.weights = model.folder / "manifest.json"

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> tuple[Path, "OnnxBackend"]:
        """An export folder (or a run directory holding one in `onnx/`) -> (the folder, its backend)."""
        path = Path(path)
        folder = path / "onnx" if (path / "onnx" / "manifest.json").exists() else path
        if not (folder / "manifest.json").exists():
            raise CheckpointError("E0110", "not an ONNX export folder (no manifest.json)", folder,
                                  help="write one with `ofac export RUN_DIR --out DIR`")
        return folder, cls(OrtModel(folder, threads))

    @property
    def device(self) -> str:
        return "cpu"

    def to(self, device) -> None:
        if str(device) not in ("cpu", "auto"):
            raise ValueError("the onnx backend runs on the CPU (ONNX Runtime's CPU provider)")

    def describe(self) -> str:
        return "backend=onnx"

    def adaptor_names(self) -> set[str]:
        return set(self.model.adaptors)

    def can_serve(self, task) -> None:
        self.model.encoder_for(encoder_inputs(task))

    def answer(self, samples, generation):
        batch = collate(samples)
        if isinstance(generation, SpeechConfig):
            return speak(self.model, batch, generation), batch.meta
        if isinstance(generation, DiffusionConfig):
            return diffusion.generate(self.model, batch, generation), batch.meta
        return search(self.model, batch, generation, NumpyArrays(generation.seed)), batch.meta


def load(path: str | Path, threads: int | None = None):
    """An export folder (or a run directory holding one in `onnx/`) -> an OFASys answering with it."""
    from .answer import OFASys

    folder, backend = OnnxBackend.load(path, threads)
    return OFASys(folder, backend)
