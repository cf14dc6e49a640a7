"""BVH motion capture files: the skeleton (HIERARCHY) and the frames (MOTION), read and written
by ofac, and forward kinematics for drawing and for physical checks.  numpy only.

A BVH skeleton is a tree of joints, each with an OFFSET from its parent and CHANNELS; a frame is
one value per channel in file order.  ofac reads any skeleton whose root has three position and
three rotation channels and whose other joints have three rotation channels each (in any of the
orders BVH allows: the channel order is the order of intrinsic rotations, `Zrotation Xrotation
Yrotation` is R = Rz Rx Ry); End Sites have no channels.

Raised errors are `BvhError(message, line)` (1-based line of the file) so the data path can name
the file, row and line."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

AXES = "XYZ"


class BvhError(ValueError):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


@dataclass
class Skeleton:
    """Joints in file order (parents before children); `order[j]` is the joint's rotation
    order as intrinsic axes ("ZXY": R = Rz Rx Ry); `position_order` the root's position
    channels (e.g. "XYZ"); `ends` the End Sites as (parent joint, offset)."""

    names: list[str]
    parents: list[int]  # -1 for the root
    offsets: np.ndarray  # [J, 3]
    order: list[str]
    position_order: str
    ends: list[tuple[int, np.ndarray]] = field(default_factory=list)
    frame_time: float = 1 / 30

    @property
    def joints(self) -> int:
        return len(self.names)

    @property
    def channels(self) -> int:
        return 3 + 3 * self.joints

    def header(self) -> str:
        """The HIERARCHY section as BVH text."""
        lines = ["HIERARCHY"]
        children = {j: [c for c in range(self.joints) if self.parents[c] == j] for j in range(self.joints)}
        ends = {j: [o for p, o in self.ends if p == j] for j in range(self.joints)}

        def offset(o) -> str:
            return "OFFSET " + " ".join(f"{v:.6f}" for v in o)

        def joint(j: int, depth: int) -> None:
            pad = "  " * depth
            kind = "ROOT" if self.parents[j] < 0 else "JOINT"
            lines.extend([f"{pad}{kind} {self.names[j]}", f"{pad}{{", f"{pad}  {offset(self.offsets[j])}"])
            rot = " ".join(f"{a}rotation" for a in self.order[j])
            if self.parents[j] < 0:
                pos = " ".join(f"{a}position" for a in self.position_order)
                lines.append(f"{pad}  CHANNELS 6 {pos} {rot}")
            else:
                lines.append(f"{pad}  CHANNELS 3 {rot}")
            for c in children[j]:
                joint(c, depth + 1)
            for o in ends[j]:
                lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    {offset(o)}", f"{pad}  }}"])
            lines.append(f"{pad}}}")

        joint(0, 0)
        return "\n".join(lines) + "\n"

    def same_as(self, other: "Skeleton") -> bool:
        return (self.names == other.names and self.parents == other.parents and self.order == other.order
                and self.position_order == other.position_order and np.allclose(self.offsets, other.offsets))

    def to_dict(self) -> dict:
        return {"names": self.names, "parents": self.parents, "offsets": self.offsets.tolist(), "order": self.order,
                "position_order": self.position_order, "ends": [[p, o.tolist()] for p, o in self.ends],
                "frame_time": self.frame_time}

    @classmethod
    def from_dict(cls, d: dict) -> "Skeleton":
        return cls(list(d["names"]), list(d["parents"]), np.asarray(d["offsets"], dtype=np.float64), list(d["order"]),
                   d["position_order"], [(int(p), np.asarray(o, dtype=np.float64)) for p, o in d["ends"]],
                   float(d["frame_time"]))


def _tokens(text: str):
    for number, line in enumerate(text.splitlines(), 1):
        for word in line.split():
            yield word, number


def parse(text: str) -> tuple[Skeleton, np.ndarray]:
    """BVH text -> (skeleton, frames [T, channels] float64 in file channel order)."""
    words = list(_tokens(text))
    at = 0

    def take(expected: str | None = None) -> tuple[str, int]:
        nonlocal at
        if at >= len(words):
            raise BvhError(f"the file ends where {expected or 'more'} was expected")
        word, line = words[at]
        if expected is not None and word.upper() != expected.upper():
            raise BvhError(f"expected `{expected}`, found `{word}`", line)
        at += 1
        return word, line

    def number() -> float:
        word, line = take()
        try:
            return float(word)
        except ValueError:
            raise BvhError(f"expected a number, found `{word}`", line) from None

    take("HIERARCHY")
    names, parents, offsets, order, ends = [], [], [], [], []
    position_order = ""

    def block(parent: int, line: int) -> None:
        nonlocal position_order
        name, _ = take()
        j = len(names)
        names.append(name)
        parents.append(parent)
        take("{")
        take("OFFSET")
        offsets.append([number(), number(), number()])
        _, cline = take("CHANNELS")
        count = int(number())
        chans = [take()[0] for _ in range(count)]
        rots = "".join(c[0].upper() for c in chans if c.lower().endswith("rotation"))
        pos = "".join(c[0].upper() for c in chans if c.lower().endswith("position"))
        want = 6 if parent < 0 else 3
        if count != want or len(rots) != 3 or sorted(rots) != list(AXES) or (parent < 0 and sorted(pos) != list(AXES)):
            raise BvhError(f"joint `{name}` has channels {' '.join(chans)}: ofac reads a root with 3 position and 3 "
                           "rotation channels and other joints with 3 rotation channels", cline)
        if parent < 0:
            if [c.lower().endswith("position") for c in chans] != [True] * 3 + [False] * 3:
                raise BvhError("the root's position channels must come before its rotation channels", cline)
            position_order = pos
        order.append(rots)
        while True:
            word, wline = take()
            key = word.upper()
            if key == "}":
                return
            if key == "JOINT":
                block(j, wline)
            elif key == "END":
                take("Site")
                take("{")
                take("OFFSET")
                ends.append((j, np.array([number(), number(), number()])))
                take("}")
            else:
                raise BvhError(f"expected JOINT, End Site or `}}` in joint `{name}`, found `{word}`", wline)

    _, line = take("ROOT")
    block(-1, line)
    take("MOTION")
    take("Frames:")
    count = int(number())
    take("Frame")
    take("Time:")
    frame_time = number()
    skeleton = Skeleton(names, parents, np.asarray(offsets, dtype=np.float64), order, position_order, ends,
                        frame_time if frame_time > 0 else 1 / 30)
    body = words[at:]
    if len(body) != count * skeleton.channels:
        line = body[-1][1] if body else words[-1][1]
        raise BvhError(f"{count} frames of {skeleton.channels} channels need {count * skeleton.channels} values; "
                       f"the file has {len(body)}", line)
    try:
        frames = np.array([float(w) for w, _ in body], dtype=np.float64).reshape(count, skeleton.channels)
    except ValueError:
        bad = next((w, n) for w, n in body if not _is_number(w))
        raise BvhError(f"expected a number, found `{bad[0]}`", bad[1]) from None
    return skeleton, frames


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def read(path: str | Path) -> tuple[Skeleton, np.ndarray]:
    return parse(Path(path).read_text())


def read_header(path: str | Path) -> Skeleton:
    """The skeleton of a BVH file (frames ignored; a header-only file may end after HIERARCHY)."""
    text = Path(path).read_text()
    if "MOTION" not in text.upper().split():
        text += "\nMOTION\nFrames: 0\nFrame Time: 0.0333333\n"
    return parse(text)[0]


def dumps(skeleton: Skeleton, frames: np.ndarray) -> str:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != skeleton.channels:
        raise BvhError(f"frames of shape {frames.shape} do not fit the skeleton's {skeleton.channels} channels")
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in frames)
    return (skeleton.header() + f"MOTION\nFrames: {len(frames)}\nFrame Time: {skeleton.frame_time:.7f}\n" + body
            + ("\n" if len(frames) else ""))


def write(path: str | Path, skeleton: Skeleton, frames: np.ndarray) -> Path:
    path = Path(path)
    path.write_text(dumps(skeleton, frames))
    return path


# ---------------------------------------------------------------------------- rotations


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Degrees [..., 3] in intrinsic `order` -> rotation matrices [..., 3, 3]."""
    from scipy.spatial.transform import Rotation

    shape = angles.shape[:-1]
    m = Rotation.from_euler(order.upper(), angles.reshape(-1, 3), degrees=True).as_matrix()
    return m.reshape(*shape, 3, 3)


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> degrees [..., 3] in intrinsic `order` (middle angle in
    [-90, 90])."""
    import warnings

    from scipy.spatial.transform import Rotation

    shape = m.shape[:-2]
    with warnings.catch_warnings():  # gimbal lock: scipy still returns a valid decomposition
        warnings.simplefilter("ignore", UserWarning)
        e = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_euler(order.upper(), degrees=True)
    return e.reshape(*shape, 3)


def rotations(skeleton: Skeleton, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BVH frames [T, C] -> (root positions [T, 3] in x, y, z; local rotations [T, J, 3, 3])."""
    T = len(frames)
    pos = np.empty((T, 3))
    for i, a in enumerate(skeleton.position_order):
        pos[:, AXES.index(a)] = frames[:, i]
    mats = np.empty((T, skeleton.joints, 3, 3))
    for j in range(skeleton.joints):
        mats[:, j] = euler_to_matrix(frames[:, 3 + 3 * j: 6 + 3 * j], skeleton.order[j])
    return pos, mats


def to_frames(skeleton: Skeleton, positions: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """The inverse of `rotations`: -> BVH frames [T, C]."""
    frames = np.empty((len(positions), skeleton.channels))
    for i, a in enumerate(skeleton.position_order):
        frames[:, i] = positions[:, AXES.index(a)]
    for j in range(skeleton.joints):
        frames[:, 3 + 3 * j: 6 + 3 * j] = matrix_to_euler(mats[:, j], skeleton.order[j])
    return frames


def forward_kinematics(skeleton: Skeleton, positions: np.ndarray, mats: np.ndarray,
                       with_ends: bool = True) -> np.ndarray:
    """World positions of every joint (then every End Site) [T, J (+E), 3]."""
    T, J = mats.shape[:2]
    rot = np.empty((T, J, 3, 3))
    out = np.empty((T, J + (len(skeleton.ends) if with_ends else 0), 3))
    for j in range(J):
        p = skeleton.parents[j]
        if p < 0:
            rot[:, j] = mats[:, j]
            out[:, j] = positions + skeleton.offsets[j]
        else:
            rot[:, j] = rot[:, p] @ mats[:, j]
            out[:, j] = out[:, p] + rot[:, p] @ skeleton.offsets[j]
    if with_ends:
        for e, (p, offset) in enumerate(skeleton.ends):
            out[:, J + e] = out[:, p] + rot[:, p] @ offset
    return out


def bones(skeleton: Skeleton) -> list[tuple[int, int]]:
    """(parent, child) index pairs into `forward_kinematics`' points: the lines of a stick figure."""
    pairs = [(p, j) for j, p in enumerate(skeleton.parents) if p >= 0]
    return pairs + [(p, skeleton.joints + e) for e, (p, _) in enumerate(skeleton.ends)]
