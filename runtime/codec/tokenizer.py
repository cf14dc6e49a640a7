"""A trained image tokenizer on disk, and the codes of a run's images.

    FOLDER/config.json         format, the codec's sizes (ImageCodecConfig), how it was trained
    FOLDER/codec.safetensors   its weights
    FOLDER/report.json         held-out PSNR / SSIM and codebook usage
    FOLDER/codes.npz           the codes of the run's images: keys (see `image_key`) and codes
                               [N, g*g] (uint16), computed once before training starts

A run keeps its tokenizer in RUN/tokenizers/image; `image_tokenizer { path = ... }` names one
to reuse (its files are copied into the run, so the run directory stays self-contained).  An
export folder holds the same files plus image_decoder.onnx, which decodes codes to pixels
without torch (`OrtImageDecoder`).

Nothing here imports torch until a codec network is needed: looking up cached codes and loading
pixels are numpy and Pillow."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import RunError
from ..preprocess.image_codes import load_pixels
from ..store.files import CheckpointError, read_json, write_atomic, write_json
from .config import ImageCodecConfig

FOLDER = Path("tokenizers") / "image"  # in a run directory


def image_targets(run) -> list[tuple[object, object, object]]:
    """(task, program, op) of every `preprocess.image_vqgan` op of the run."""
    return [(t, p, op) for t in run.tasks for p in t.ir.programs for op in p.of_kind("preprocess")
            if op.name == "image_vqgan"]


def codec_config(run) -> ImageCodecConfig | None:
    """The image tokenizer the run's tasks ask for (None: no image outputs).  The lowering
    gives every image target its sizes from the one `image_tokenizer` block; a run assembled
    from tasks compiled apart may disagree, which is an error."""
    ops = image_targets(run)
    if not ops:
        return None
    sizes = {(op.get("size"), op.get("grid"), op.get("codes")) for _, _, op in ops}
    if len(sizes) > 1:
        raise RunError(f"the run's image targets ask for different image tokenizers {sorted(sizes)} "
                       "((size, grid, codes) each): one run has one image tokenizer")
    size, grid, codes = sizes.pop()
    return ImageCodecConfig(size=size, grid=grid, codes=codes)


def named_folder(run) -> Path | None:
    """The trained tokenizer `image_tokenizer { path }` names, relative to the task file's folder."""
    path = run.image_tokenizer.get("path")
    if not path:
        return None
    path = Path(path)
    return path if path.is_absolute() else run.base_dir / path


FORMAT = "ofac-image-tokenizer-1"
FILES = ("config.json", "codec.safetensors", "report.json")


def image_key(value, base_dir: Path | None) -> str:
    """What identifies an image cell in the code cache: a file by its resolved path, size and
    modification time (no read needed); anything else (bytes, base64, arrays) by a hash of its
    content."""
    if isinstance(value, (str, Path)) and len(str(value)) < 1024:
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is not None and path.is_file():
            return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path") or repr(sorted(value))
    if hasattr(value, "tobytes"):  # numpy arrays, PIL images
        shape = getattr(value, "shape", getattr(value, "size", ""))
        value = repr(shape).encode() + value.tobytes()
    elif type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy().tobytes()
    data = value.encode() if isinstance(value, str) else bytes(value)
    return "sha1:" + hashlib.sha1(data).hexdigest()


class ImageTokenizer:
    """A trained tokenizer: its config and report, the code cache, and its network (loaded on
    first use: PyTorch, or in an export folder ONNX Runtime's image_decoder.onnx).  Pickles
    without the network (DataLoader workers reload it only if they must encode a new image)."""

    def __init__(self, folder: Path, config: dict, report: dict | None = None):
        self.folder, self.config, self.report = Path(folder), config, report or {}
        self.cfg = ImageCodecConfig(**config["codec"])
        self.cache: dict[str, np.ndarray] = {}
        self._codec = None
        self._ort = None

    # ------------------------------------------------------------------ files

    @classmethod
    def load(cls, folder: str | Path, codes: bool = True) -> "ImageTokenizer":
        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise CheckpointError("E0110", "not an image tokenizer folder (no config.json)", folder,
                                  help="name the tokenizers/image folder of a run that trained one")
        config = read_json(folder / "config.json")
        if config.get("format") != FORMAT:
            raise CheckpointError("E0111", f"unknown image tokenizer format {config.get('format')!r}",
                                  folder / "config.json", help="train the tokenizer again with this ofac")
        report = read_json(folder / "report.json") if (folder / "report.json").exists() else {}
        tok = cls(folder, config, report)
        if codes and (folder / "codes.npz").exists():
            tok.cache = _read_codes(folder / "codes.npz")
        return tok

    @classmethod
    def save(cls, folder: Path, codec, report: dict, training: dict) -> "ImageTokenizer":
        """Write a trained codec (every file atomically, config.json last)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".codec.safetensors.tmp-{os.getpid()}"
        save_file({k: v.detach().cpu().contiguous() for k, v in codec.state_dict().items()}, str(tmp))
        os.replace(tmp, folder / "codec.safetensors")
        write_json(folder / "report.json", report)
        config = {"format": FORMAT, "codec": codec.cfg.to_dict(), "training": training}
        write_json(folder / "config.json", config)
        tok = cls(folder, config, report)
        tok._codec = codec.eval()
        return tok

    def copy_to(self, folder: Path) -> "ImageTokenizer":
        """The tokenizer's files in `folder` (without the code cache, which belongs to a run)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (self.folder / name).exists():
                shutil.copyfile(self.folder / name, folder / name)
        return ImageTokenizer.load(folder, codes=False)

    def save_codes(self) -> None:
        keys = np.array(list(self.cache), dtype=str)
        codes = np.stack(list(self.cache.values())) if self.cache else np.zeros((0, self.cfg.grid ** 2), np.uint16)
        import io

        buf = io.BytesIO()
        np.savez(buf, keys=keys, codes=codes)
        write_atomic(self.folder / "codes.npz", buf.getvalue())

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_codec": None, "_ort": None}

    # ------------------------------------------------------------------ codes

    @property
    def codec(self):
        """The PyTorch network (loaded on first use)."""
        if self._codec is None:
            from safetensors.torch import load_file

            from .image import ImageCodec

            path = self.folder / "codec.safetensors"
            if not path.exists():
                raise CheckpointError("E0110", "the image tokenizer's weights are missing", path,
                                      help="train the tokenizer again (delete the folder and rerun)")
            codec = ImageCodec(self.cfg)
            codec.load_state_dict(load_file(str(path)))
            self._codec = codec.eval()
        return self._codec

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [N, S, S, 3] -> codes [N, g*g] (int64)."""
        import torch

        from .training import to_unit

        with torch.no_grad():
            return self.codec.encode(to_unit(pixels)).numpy()

    def codes_of(self, value, base_dir: Path | None) -> np.ndarray:
        """The codes of an image cell: from the cache, else encoded now (and kept)."""
        key = image_key(value, base_dir)
        codes = self.cache.get(key)
        if codes is None:
            codes = self.encode(load_pixels(value, base_dir, self.cfg.size)[None])[0].astype(np.uint16)
            self.cache[key] = codes
        return codes

    def decode(self, codes) -> np.ndarray:
        """codes [N, g*g] (indices into the codebook) -> uint8 images [N, S, S, 3]."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.cfg.grid ** 2)
        if (self.folder / "image_decoder.onnx").exists() and self._codec is None:
            if self._ort is None:
                self._ort = OrtImageDecoder(self.folder / "image_decoder.onnx")
            return self._ort(codes)
        import torch

        from .training import to_pixels

        with torch.no_grad():
            return to_pixels(self.codec.decode(torch.from_numpy(codes)))

    def describe(self) -> str:
        r = self.report
        measured = (f": held-out PSNR {r['psnr']:.1f} dB, SSIM {r['ssim']:.3f}, {r['codes_used']}/{self.cfg.codes} "
                    "codes used") if "psnr" in r else ""
        c = self.cfg
        return f"image tokenizer {c.size}px -> {c.grid}x{c.grid} codes of {c.codes}{measured}"


class OrtImageDecoder:
    """image_decoder.onnx (codes [N, g*g] int64 -> uint8 images [N, S, S, 3]) in ONNX Runtime."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        (images,) = self.session.run(None, {"codes": np.ascontiguousarray(codes, dtype=np.int64)})
        return images


def run_resources(folder: str | Path, media: str = "torch") -> dict:
    """The learned codecs of a run directory's (or export folder's) outputs: "image" (an
    ImageTokenizer, `tokenizers/image`), "audio" (a SpeechCodec, `tokenizers/audio`, vocoding
    in `media`: torch or numpy) and "motion" (a MotionCodec, `tokenizers/motion`) when it has them."""
    from .motion import FOLDER as MOTION
    from .motion import MotionCodec
    from .speech import FOLDER as SPEECH
    from .speech import SpeechCodec

    found = {}
    if (Path(folder) / FOLDER / "config.json").exists():
        found["image"] = ImageTokenizer.load(Path(folder) / FOLDER, codes=False)
    if (Path(folder) / SPEECH / "config.json").exists():
        found["audio"] = SpeechCodec.load(Path(folder) / SPEECH, vocoder=media)
    if (Path(folder) / MOTION / "config.json").exists():
        found["motion"] = MotionCodec.load(Path(folder) / MOTION)
    return found


def _read_codes(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as f:
            return dict(zip(f["keys"].tolist(), f["codes"]))
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError("E0111", f"unreadable code cache: {err}", path,
                              help="delete it: the codes are computed again") from None
