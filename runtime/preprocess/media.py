"""Decoding media cell values: a path (relative to the data file), raw bytes, base64 text,
a PIL image, a numpy/torch array, or a `{"array", "sampling_rate"}` audio dict."""
from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

import numpy as np

_B64 = re.compile(r"^[A-Za-z0-9+/\s]+=*$")


class MediaError(ValueError):
    """Why a cell could not be decoded; the caller adds file, row and column."""


def named_path(value, base_dir: Path | None) -> Path | None:
    """The path a cell names (relative to the data file's folder), if it can be one: a str or
    Path under 1024 characters; None for bytes, base64 text, arrays.  No filesystem access."""
    if not isinstance(value, (str, Path)) or len(str(value)) >= 1024:
        return None
    path = Path(value)
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def _source(value, base_dir: Path | None, what: str):
    """Where a media cell's content is, found without reading it: ("file", Path), ("bytes",
    bytes-like), ("base64", str) or ("memory", value) for arrays, PIL/torch objects and
    `{"array", ...}` dicts.  What cannot be media raises MediaError: a wrong type, a URL, a
    path that names no file."""
    if isinstance(value, dict):  # datasets' Image/Audio features
        if value.get("bytes") is not None:
            return "bytes", value["bytes"]
        if "array" in value:
            return "memory", value
        if not value.get("path"):
            raise MediaError(f"a {what} dict needs `path`, `bytes` or `array`; found keys {sorted(value)}")
        value = value["path"]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", value
    if isinstance(value, np.ndarray) or type(value).__module__.startswith(("torch", "PIL")):
        return "memory", value
    if not isinstance(value, (str, Path)):
        raise MediaError(f"expected a path, bytes or base64 {what}, found {type(value).__name__}")
    text = str(value)
    if text.startswith(("http://", "https://", "oss://")):
        raise MediaError(f"{what} URLs are not fetched (ofac reads local data only): {text}")
    path = named_path(value, base_dir)
    if path is not None and path.is_file():
        return "file", path
    if len(text) >= 64 and _B64.match(text[:4096]):
        return "base64", text
    shown = path if path is not None else text[:60] + "..."
    raise MediaError(f"{what} file not found: {shown}")


def check_cell(value, base_dir: Path | None, what: str) -> None:
    """What can be said of a media cell without decoding it (the scan before training): a path
    that names no file, a URL or a value of the wrong type raise MediaError; bytes, base64 text,
    arrays and images in memory pass."""
    _source(value, base_dir, what)


def media_cell(what: str):
    """A registry `cell` check for a preprocessor reading `what` (image, audio, video) files."""
    return lambda value, attrs, base_dir: check_cell(value, base_dir, what)


def _file(value, base_dir: Path | None, what: str):
    """A path (decoders read files natively, fastest) or an in-memory file for bytes/base64."""
    kind, found = _source(value, base_dir, what)
    if kind == "file":
        return str(found)
    if kind == "bytes":
        return io.BytesIO(bytes(found))
    if kind == "base64":
        try:
            return io.BytesIO(base64.b64decode(found, validate=False))
        except (binascii.Error, ValueError) as err:
            raise MediaError(f"invalid base64 {what}: {err}") from None
    raise MediaError(f"expected a path, bytes or base64 {what}, found {type(found).__name__}")


def load_image(value, base_dir: Path | None = None):
    """A PIL RGB image, EXIF-rotated; grayscale, palette, RGBA and 16-bit images converted."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(value, Image.Image):
        img = value
    elif isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        return _array_image(value)
    else:
        try:
            img = Image.open(_file(value, base_dir, "image"))
            img.load()
        except (UnidentifiedImageError, OSError) as err:
            raise MediaError(f"unreadable image: {err}") from None
    if img.getexif().get(0x0112, 1) != 1:  # only rotate (a full copy) when EXIF says so
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray((arr / hi * 255).astype(np.uint8))
    if img.mode == "RGBA" or img.mode == "LA" or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def _array_image(value):
    from PIL import Image

    arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # CHW -> HWC
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255 if arr.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise MediaError(f"an image array must be HxW or HxWxC, found shape {arr.shape}")
    return Image.fromarray(arr).convert("RGB")


def load_audio(value, base_dir: Path | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 waveform, sample rate).  WAV, FLAC, OGG via soundfile."""
    if isinstance(value, dict) and "array" in value:
        wav = np.asarray(value["array"], dtype=np.float32)
        rate = value.get("sampling_rate")
        if not rate:
            raise MediaError("an audio dict needs `sampling_rate`")
        return _mono(wav), int(rate)
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        raise MediaError("a bare audio array has no sample rate: pass {'array': ..., 'sampling_rate': ...}")
    import soundfile as sf

    try:
        wav, rate = sf.read(_file(value, base_dir, "audio"), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise MediaError(f"unreadable audio: {err}") from None
    return _mono(wav.T if wav.ndim == 2 else wav), int(rate)


def embedded_features(value, dim: int) -> np.ndarray:
    """Pre-extracted audio features [frames, dim]: base64 of big-endian float32, or numbers."""
    if isinstance(value, str):
        arr = np.frombuffer(base64.b64decode(value), dtype=">f4").astype(np.float32)
    else:
        arr = np.asarray(value, dtype=np.float32)
    if arr.size % dim:
        raise ValueError(f"{arr.size} feature values do not split into frames of dim={dim}")
    return arr.reshape(-1, dim).copy()


def _mono(wav: np.ndarray) -> np.ndarray:
    if wav.ndim == 2:  # channels first after transposition
        wav = wav.mean(axis=0) if wav.shape[0] <= 8 else wav.mean(axis=1)
    if wav.ndim != 1 or wav.size == 0:
        raise MediaError(f"audio must be a non-empty waveform, found shape {wav.shape}")
    return np.ascontiguousarray(wav, dtype=np.float32)


def load_video(value, base_dir: Path | None, num_frames: int) -> np.ndarray:
    """`num_frames` RGB frames [N, H, W, 3] uint8 sampled uniformly over the clip (PyAV)."""
    import av

    if isinstance(value, np.ndarray):
        if value.ndim != 4 or len(value) == 0:
            raise MediaError("a video has no frames")
        return value[_uniform(len(value), num_frames)]
    try:
        with av.open(_file(value, base_dir, "video")) as container:
            # every frame must be decoded (each depends on the ones before), but only the
            # sampled ones are converted to RGB: the conversion was half the cost of a clip
            decoded = list(container.decode(video=0))
            if not decoded:
                raise MediaError("a video has no frames")
            return np.stack([decoded[i].to_ndarray(format="rgb24") for i in _uniform(len(decoded), num_frames)])
    except (av.error.FFmpegError, ValueError, StopIteration) as err:
        raise MediaError(f"unreadable video: {err}") from None


def _uniform(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over n frames, first and last included."""
    return np.linspace(0, n - 1, k).round().astype(int)
