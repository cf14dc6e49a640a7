"""The motion codec of a run with MOTION slots: the statistics that z-score its `motion_6d`
features (`preprocess.motion`), the skeleton generated motions are written in, and `Motion`, a
generated clip with its BVH frames, joint positions, and BVH, GIF and feature files.  numpy only.

    FOLDER/config.json   format, the skeleton, mean and std per feature, clips and frames counted,
                         the median clip length (what a motion is generated at by default)

Stage 0 of a run writes it (`train.tokenizers.prepare_motion`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import bvh
from ..preprocess.bvh import Skeleton
from ..preprocess.motion import decode, rectify_features
from ..store.files import CheckpointError, read_json, write_json

FOLDER = Path("tokenizers") / "motion"  # in a run directory
FORMAT = "ofac-motion-features-1"


def motion_ops(run) -> list[tuple[object, object, object]]:
    """(task, program, op) of every `preprocess.motion_6d` op of the run (inputs and targets)."""
    return [(t, p, op) for t in run.tasks for p in t.ir.programs for op in p.of_kind("preprocess")
            if op.name == "motion_6d"]


class MotionCodec:
    """A run's motion statistics and skeleton."""

    def __init__(self, config: dict):
        self.config = config
        self.skeleton = Skeleton.from_dict(config["skeleton"])
        self.mean = np.asarray(config["mean"], dtype=np.float32)
        self.std = np.asarray(config["std"], dtype=np.float32)
        self.length = int(config["length"])

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def load(cls, folder: str | Path) -> "MotionCodec":
        path = Path(folder) / "config.json"
        config = read_json(path)
        if config.get("format") != FORMAT:
            raise CheckpointError("E0113", f"{path} is not ofac motion statistics (format {config.get('format')!r})",
                                  path, help="run `ofac run` again to count them")
        return cls(config)

    @classmethod
    def save(cls, folder: Path, skeleton: Skeleton, clips: list[np.ndarray]) -> "MotionCodec":
        """Count the statistics of training clips' features [T, F] and write them."""
        every = np.concatenate(clips)
        std = every.std(0)
        config = {"format": FORMAT, "skeleton": skeleton.to_dict(), "mean": every.mean(0).tolist(),
                  # a constant feature (a joint that never moves) keeps unit scale
                  "std": np.where(std > 1e-6, std, 1.0).tolist(), "clips": len(clips), "frames": len(every),
                  "length": int(np.median([len(c) for c in clips]))}
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", config)
        return cls(config)

    def describe(self) -> str:
        c = self.config
        return (f"{self.skeleton.joints} joints, {self.dim} features, counted over {c['clips']} clips "
                f"({c['frames']} frames), median {self.length} frames")

    def normalize(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.std + self.mean

    def rectify(self, x: np.ndarray) -> np.ndarray:
        """Normalized features [..., F] -> the same with their rotations made proper."""
        return self.normalize(rectify_features(self.skeleton, self.denormalize(x)))

    def motion(self, x: np.ndarray, known=None) -> "Motion":
        """Generated normalized features [T, F] (and the frames that were given) -> a Motion in the
        run's skeleton."""
        return Motion(self.skeleton, self.denormalize(x), known)


@dataclass
class Motion:
    """A motion clip: its skeleton, features [T, F] (unnormalized) and the frames given (if it was
    in-betweened); its BVH frames, joint positions, and files."""

    skeleton: Skeleton
    features: np.ndarray
    known: np.ndarray | None = None  # [T] bool: frames that were given (in-betweening)

    @property
    def frames(self) -> np.ndarray:
        """BVH frames [T, C] in the skeleton's channel order."""
        return bvh.to_frames(self.skeleton, *decode(self.skeleton, self.features, self.known))

    def positions(self) -> np.ndarray:
        """World positions of the joints and End Sites [T, J+E, 3]."""
        return bvh.forward_kinematics(self.skeleton, *decode(self.skeleton, self.features, self.known))

    def __len__(self) -> int:
        return len(self.features)

    def save_bvh(self, path: str | Path) -> Path:
        return bvh.write(path, self.skeleton, self.frames)

    def save_features(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("wb") as f:
            np.savez(f, feature=self.features.astype(np.float32), frames=self.frames.astype(np.float32))
        return path

    def save_gif(self, path: str | Path, size: int = 160) -> Path:

        frames = stick_figures(self.skeleton, self.positions(), size)
        ms = max(20, int(round(self.skeleton.frame_time * 1000)))
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
        return Path(path)


def stick_figures(skeleton: Skeleton, points: np.ndarray, size: int = 160) -> list:
    """Joint positions [T, P, 3] -> one PIL image a frame: the skeleton drawn from the front-right
    (x and z turned 30 degrees about the vertical), the camera following the root sideways, one
    scale for the whole clip, a floor line at the clip's lowest point."""
    from PIL import Image, ImageDraw

    a = np.radians(30)
    u = points[..., 0] * np.cos(a) + points[..., 2] * np.sin(a)
    u = u - u[:, :1]  # follow the root
    v = points[..., 1]
    lo_v, hi_v = v.min(), v.max()
    scale = 0.8 * size / max(hi_v - lo_v, 2 * np.abs(u).max(), 1e-6)
    x = size / 2 + u * scale
    y = size / 2 - (v - (lo_v + hi_v) / 2) * scale
    floor = float(y.max())
    lines = bvh.bones(skeleton)
    out = []
    for t in range(len(points)):
        img = Image.new("RGB", (size, size), (250, 250, 247))
        d = ImageDraw.Draw(img)
        d.line([(0, floor), (size, floor)], fill=(200, 200, 195), width=1)
        for p, c in lines:
            d.line([(x[t, p], y[t, p]), (x[t, c], y[t, c])], fill=(40, 60, 120), width=2)
        out.append(img)
    return out
