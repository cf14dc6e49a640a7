"""MOTION: `preprocess.motion_6d`, OFASys' motion features of a BVH clip (`bvh.py` reads the
files), z-scored by the run's motion statistics (`codec.motion`), cut to the slot's frame
bounds.  numpy only (both media registries share it).

Features of a frame (F = 6 + 6J for J joints): the root position (3), the root's velocity to the
next frame in its heading frame (3: rotated by minus the root's yaw about +Y, so "forward" reads
the same whichever way the body faces), and each joint's rotation as the first two columns of
its matrix (6 each: continuous, unlike Euler angles).  Back (`decode`): Gram-Schmidt makes the two
columns a rotation again; the root's x and z are its velocities integrated (as OFASys does),
corrected to pass through the frames an in-betweening gives.

A cell names a `.bvh` file (its own skeleton), or `.npy` frames [T, 3+3J] / `.npz` {frames,
weights} (OFASys' in-betweening rows: weights 1 on known frames) read with the task's
`bvh_header`.  Relative paths resolve against the data file's folder, as media paths do.

Attributes: `max_length` (longer clips are cut: a random window in training, the start
otherwise), `min_length` (shorter clips are refused: `on_error = skip` skips them, as OFASys
does), `sample_rate` (every k-th frame, from a random phase in training), `soft_trim` p
(training: a centre span, a margin of Poisson(p T / 2) frames cut at each end, never below
min_length), `window` (training: a random sub-window of min_length..max_length frames),
`anchor_frame` i (the clip turned and moved so frame i faces +Z at the origin)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import bvh
from .base import Context, Features, preprocessors
from .bvh import BvhError, Skeleton, read_header

REGISTRY = preprocessors()


def feature_dim(skeleton: Skeleton) -> int:
    return 6 + 6 * skeleton.joints


def _yaw(root: np.ndarray) -> np.ndarray:
    """Heading angle about +Y of root rotations [T, 3, 3] (where the body's +Z points)."""
    forward = root[:, :, 2]
    return np.arctan2(forward[:, 0], forward[:, 2])


def _about_y(yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.zeros((len(yaw), 3, 3))
    m[:, 0, 0], m[:, 0, 2], m[:, 1, 1], m[:, 2, 0], m[:, 2, 2] = c, s, 1.0, -s, c
    return m


def encode(skeleton: Skeleton, frames: np.ndarray, anchor: int | None = None) -> np.ndarray:
    """BVH frames [T, C] -> features [T, F] (float64); with `anchor` (OFASys' anchor_frame) the
    clip turned about +Y and moved on the floor so that frame `anchor` faces +Z at x = z = 0."""
    pos, mats = bvh.rotations(skeleton, np.asarray(frames, dtype=np.float64))
    if anchor is not None:
        i = min(anchor, len(pos) - 1)
        turn = _about_y(-_yaw(mats[i:i + 1, 0]))[0]
        pos = pos - pos[i] * np.array([1.0, 0.0, 1.0])
        pos = pos @ turn.T
        mats = mats.copy()
        mats[:, 0] = turn @ mats[:, 0]
    T = len(pos)
    vel = np.zeros((T, 3))
    if T > 1:
        vel[:-1] = pos[1:] - pos[:-1]
        vel[-1] = vel[-2]
    local = np.einsum("tji,tj->ti", _about_y(_yaw(mats[:, 0])), vel)  # R_y(yaw)^T v
    return np.concatenate([pos, local, columns(mats)], axis=1)


def columns(mats: np.ndarray) -> np.ndarray:
    """Rotations [..., J, 3, 3] -> their 6-D features [..., 6J]: per joint column 0, then column 1."""
    return np.swapaxes(mats[..., :2], -1, -2).reshape(*mats.shape[:-3], -1)


def rectify(rot6: np.ndarray) -> np.ndarray:
    """[..., 6] two columns -> [..., 3, 3] the nearest rotation (Gram-Schmidt, as OFASys)."""
    a, b = rot6[..., :3], rot6[..., 3:]
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-8)
    b = b - (a * b).sum(-1, keepdims=True) * a
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-8)
    return np.stack([a, b, np.cross(a, b)], axis=-1)


def decode(skeleton: Skeleton, features: np.ndarray, known=None) -> tuple[np.ndarray, np.ndarray]:
    """Features [T, F] -> (root positions [T, 3], rotations [T, J, 3, 3]).  The root's x and z are
    its velocities integrated from the first frame (OFASys': a trajectory as smooth as the
    velocities, where per-frame positions would each carry their own error), corrected to pass
    through the position of every frame `known` [T] marks as given (in-betweening: the given
    frames stay where they were, the correction spread linearly over the frames between)."""
    f = np.asarray(features, dtype=np.float64)
    T, J = len(f), skeleton.joints
    if f.shape[1] != feature_dim(skeleton):
        raise ValueError(f"motion features of width {f.shape[1]}; the skeleton's {J} joints need "
                         f"{feature_dim(skeleton)}")
    mats = rectify(f[:, 6:].reshape(T, J, 6))
    pos = f[:, :3].copy()
    if T > 1:
        world = np.einsum("tij,tj->ti", _about_y(_yaw(mats[:, 0])), f[:, 3:6])
        pos[1:, [0, 2]] = f[0, [0, 2]] + np.cumsum(world[:-1, [0, 2]], axis=0)
        given = np.nonzero(np.asarray(known, bool))[0] if known is not None else np.zeros(0, int)
        if len(given):
            for axis in (0, 2):
                pos[:, axis] += np.interp(np.arange(T), given, f[given, axis] - pos[given, axis])
    return pos, mats


def rectify_features(skeleton: Skeleton, features: np.ndarray) -> np.ndarray:
    """Features [..., F] whose 6-D rotations are made proper rotations again (each sampling step)."""
    f = np.array(features, dtype=np.float64)
    lead, J = f.shape[:-1], skeleton.joints
    mats = rectify(f[..., 6:].reshape(*lead, J, 6))
    f[..., 6:] = columns(mats)
    return f


def load_clip(path: Path, header: Skeleton | None = None) -> tuple[Skeleton, np.ndarray, np.ndarray | None]:
    """A MOTION cell's file -> (skeleton, BVH frames [T, C], known-frame weights [T] or None).
    `.bvh` carries its own skeleton; `.npy` frames [T, 3+3J] and `.npz` {frames, weights} (OFASys'
    in-betweening rows) use the task's `bvh_header`."""
    suffix = path.suffix.lower()
    if suffix == ".bvh":
        skeleton, frames = bvh.read(path)
        return skeleton, frames, None
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"a MOTION cell names a .bvh, .npy or .npz file, not `{path.suffix}`")
    if header is None:
        raise ValueError(f"`{path.name}` holds frames without a skeleton: name the BVH header file in the task "
                         "(`bvh_header = skeleton.bvh`)")
    weights = None
    if suffix == ".npy":
        frames = np.load(path)
    else:
        with np.load(path) as z:
            frames, weights = z["frames"], (z["weights"] if "weights" in z else None)
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != header.channels:
        raise ValueError(f"frames of shape {list(frames.shape)}; the header's skeleton has {header.channels} channels "
                         f"(3 + 3 x {header.joints} joints)")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(weights) != len(frames):
            raise ValueError(f"{len(weights)} weights for {len(frames)} frames")
    return header, frames, weights


ATTRS = ("max_length", "min_length", "sample_rate", "soft_trim", "window", "anchor_frame", "bvh_header")


def _path(value, base_dir: Path | None, what: str) -> Path:
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if not isinstance(value, (str, Path)):
        raise ValueError(f"a MOTION cell names a .bvh, .npy or .npz file; found {type(value).__name__}")
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    return path


_HEADERS: dict[Path, object] = {}


def header(attrs: dict, base_dir: Path | None):
    """The task's `bvh_header` skeleton (None when the task names none), read once a process."""
    name = attrs.get("bvh_header")
    if not name:
        return None
    path = _path(name, base_dir, "the bvh_header file")
    if path not in _HEADERS:
        try:
            _HEADERS[path] = read_header(path)
        except BvhError as err:
            raise ValueError(f"{path}: {err}") from None
    return _HEADERS[path]


def read_clip(value, attrs: dict, base_dir: Path | None):
    """A cell -> (skeleton, BVH frames [T, C], known weights [T] or None), unprocessed."""
    path = _path(value, base_dir, "motion file")
    try:
        return load_clip(path, header(attrs, base_dir))
    except BvhError as err:
        raise ValueError(f"{path.name}: {err}") from None
    except (OSError, KeyError) as err:
        raise ValueError(f"unreadable motion file {path.name}: {err}") from None


def cut(frames: np.ndarray, known, attrs: dict, ctx: Context):
    """The slot's frame bounds: subsampling, then a window, then max_length."""
    k = int(attrs.get("sample_rate") or 1)
    if k > 1:
        phase = int(ctx.rng.integers(k)) if ctx.training else 0
        frames = frames[phase::k]
        known = known[phase::k] if known is not None else None
    lo, hi = int(attrs.get("min_length") or 1), int(attrs.get("max_length") or 1000)
    if len(frames) < lo:
        raise ValueError(f"a clip of {len(frames)} frames is shorter than min_length={lo}")
    if attrs.get("soft_trim") and ctx.training:  # a centre span: margins Poisson(p * T / 2) at each end
        a, b = (int(m) for m in ctx.rng.poisson(attrs["soft_trim"] * len(frames) / 2, 2))
        spare = len(frames) - lo
        a, b = min(a, spare), min(b, max(0, spare - min(a, spare)))
        frames = frames[a:len(frames) - b]
        known = known[a:len(known) - b] if known is not None else None
    length = len(frames)
    if attrs.get("window") and ctx.training:
        length = int(ctx.rng.integers(lo, min(hi, len(frames)) + 1))
    length = min(length, hi)
    start = int(ctx.rng.integers(len(frames) - length + 1)) if ctx.training and length < len(frames) else 0
    frames = frames[start:start + length]
    return frames, (known[start:start + length] if known is not None else None)


@REGISTRY.register("motion_6d", attrs=ATTRS, cell=lambda value, attrs, base_dir: _path(value, base_dir, "motion file"))
def motion_6d(value, attrs: dict, ctx: Context) -> Features:
    """A clip's features [T, F] float32, normalized by the run's statistics once stage 0 has
    counted them (`resources["motion"]`); meta: its frames and known-frame mask."""
    skeleton, frames, known = read_clip(value, attrs, ctx.base_dir)
    frames, known = cut(frames, known, attrs, ctx)
    features = encode(skeleton, frames, attrs.get("anchor_frame"))
    meta = {"frames": len(frames), "known": None if known is None else known > 0.5}
    if not ctx.training:
        meta["reference"] = (features, meta["known"])
    stats = (ctx.resources or {}).get("motion")
    if stats is not None:
        if not stats.skeleton.same_as(skeleton):
            raise ValueError(f"the clip's skeleton ({skeleton.joints} joints: {', '.join(skeleton.names[:4])}, ...) is "
                             f"not the run's ({stats.skeleton.joints} joints: {', '.join(stats.skeleton.names[:4])}, "
                             "...): one run, one skeleton")
        features = stats.normalize(features)
    return Features(np.ascontiguousarray(features, dtype=np.float32), meta)
