"""Generate the motion dataset (deterministic; about half a minute; nothing is downloaded).

  python examples/make_motion.py [--out examples/motion] [--train 3000] [--valid 200] [--seed 0]

A small skeleton (12 joints with rotations: hips, spine, chest, neck, shoulders, elbows, hips,
knees; head, hands and feet as End Sites; rotation order ZXY, centimetres, 20 frames a second)
and procedural clips of 48-64 frames, each its own BVH file: walk, run, jump, squat, wave the
left or right hand, kick with the left or right leg, turn left or right, each "slowly" or
"quickly" (frequency, amplitude and speed change), and four compositions ("walks then jumps")
joined with a short cross-fade.  Every clip varies its frequency (x0.85-1.15), phase, amplitude
(x0.8-1.2), start position and heading, with 1 degree of noise per channel.

Prompts are phrased five ways ("a person walks slowly", "someone is walking slowly", ...); one
phrasing of each action and modifier is held out of training.

  motion_train.jsonl   text, bvh_frames, action, speed, caption
  motion_valid.jsonl   the same for new clips of the training phrasings
  motion_heldout.jsonl phrasings training never saw (each action and modifier seen otherwise)
  inbetween_*.jsonl    bvh_frames: .npz {frames, weights} (the first 12 and last 12 frames known,
                       OFASys' in-betweening rows), with skeleton.bvh as the task's bvh_header

An existing output with the same settings is kept (`--force` regenerates).  OFAC_MAX_ROWS=N caps
every file at N rows."""
from __future__ import annotations

import argparse
import json
import math
import os
import random
from pathlib import Path

import numpy as np

from ofac.runtime.preprocess import bvh

FPS = 20
ACTIONS = ("walk", "run", "jump", "squat", "wave left", "wave right", "kick left", "kick right", "turn left",
           "turn right")
COMPOSITIONS = (("walk", "jump"), ("run", "squat"), ("jump", "wave right"), ("squat", "kick left"))
SPEEDS = ("slowly", "quickly")
VERBS = {"walk": ("walks", "walking"), "run": ("runs", "running"), "jump": ("jumps", "jumping"),
         "squat": ("squats", "squatting"), "wave left": ("waves the left hand", "waving the left hand"),
         "wave right": ("waves the right hand", "waving the right hand"),
         "kick left": ("kicks with the left leg", "kicking with the left leg"),
         "kick right": ("kicks with the right leg", "kicking with the right leg"),
         "turn left": ("turns left", "turning left"), "turn right": ("turns right", "turning right")}
PHRASINGS = ("a person {v} {s}", "someone is {g} {s}", "{s}, a person {v}", "a man {v} {s}", "a woman is {g} {s}")
# joints: name, parent, offset (cm); End Sites: parent, offset
JOINTS = (("Hips", -1, (0, 0, 0)), ("Spine", 0, (0, 10, 0)), ("Chest", 1, (0, 15, 0)), ("Neck", 2, (0, 20, 0)),
          ("LeftShoulder", 2, (17, 16, 0)), ("LeftElbow", 4, (0, -27, 0)),
          ("RightShoulder", 2, (-17, 16, 0)), ("RightElbow", 6, (0, -27, 0)),
          ("LeftHip", 0, (9, -4, 0)), ("LeftKnee", 8, (0, -42, 0)),
          ("RightHip", 0, (-9, -4, 0)), ("RightKnee", 10, (0, -42, 0)))
ENDS = ((3, (0, 14, 0)), (5, (0, -25, 0)), (7, (0, -25, 0)), (9, (0, -42, 0)), (11, (0, -42, 0)))
J = {name: i for i, (name, _, _) in enumerate(JOINTS)}
HIP_HEIGHT = 88.0


def skeleton() -> bvh.Skeleton:
    return bvh.Skeleton([n for n, _, _ in JOINTS], [p for _, p, _ in JOINTS],
                        np.array([o for _, _, o in JOINTS], dtype=np.float64), ["ZXY"] * len(JOINTS), "XYZ",
                        [(p, np.array(o, dtype=np.float64)) for p, o in ENDS], 1 / FPS)


def clip(action: str, speed: str, T: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One action as (root positions [T, 3], root yaw [T] degrees, joint angles [T, J, 3] as
    (z, x, y) degrees), in the body's own frame (facing +Z, starting at the origin)."""
    quick = speed == "quickly"
    f = (1.0 if quick else 0.55) * rng.uniform(0.85, 1.15)  # cycles a second
    amp = (1.25 if quick else 0.8) * rng.uniform(0.8, 1.2)
    phase = rng.uniform(0, 2 * math.pi)
    t = np.arange(T) / FPS
    w = 2 * math.pi * f * t + phase
    ang = np.zeros((T, len(JOINTS), 3))
    pos = np.zeros((T, 3))
    pos[:, 1] = HIP_HEIGHT
    yaw = np.zeros(T)
    Z, X = 0, 1  # angle slots: rotation about Z (arms out), about X (swing forward/back)

    def gait(hip: float, knee: float, arm: float, forward: float, bob: float) -> None:
        s = np.sin(w)
        ang[:, J["LeftHip"], X], ang[:, J["RightHip"], X] = -hip * amp * s, hip * amp * s
        ang[:, J["LeftKnee"], X] = knee * amp * np.maximum(0, np.sin(w + 1.2))
        ang[:, J["RightKnee"], X] = knee * amp * np.maximum(0, np.sin(w + 1.2 + math.pi))
        ang[:, J["LeftShoulder"], X], ang[:, J["RightShoulder"], X] = arm * amp * s, -arm * amp * s
        ang[:, J["LeftElbow"], X] = ang[:, J["RightElbow"], X] = -20 * amp
        pos[:, 2] = forward * amp * t
        pos[:, 1] = HIP_HEIGHT + bob * np.abs(np.cos(w))

    if action == "walk":
        gait(22, 35, 18, 70 if quick else 40, 2)
    elif action == "run":
        f *= 1.4
        w = 2 * math.pi * f * t + phase
        gait(40, 80, 35, 260 if quick else 150, 6)
        ang[:, J["Spine"], X] = 10
    elif action in ("jump", "squat"):
        dip = 0.5 - 0.5 * np.cos(w)  # 0 standing .. 1 lowest
        depth = (30 if action == "squat" else 15) * amp
        ang[:, J["LeftHip"], X] = ang[:, J["RightHip"], X] = -2.2 * depth * dip
        ang[:, J["LeftKnee"], X] = ang[:, J["RightKnee"], X] = 3.0 * depth * dip
        ang[:, J["Spine"], X] = 0.8 * depth * dip
        pos[:, 1] = HIP_HEIGHT - depth * dip
        if action == "jump":  # the push from the lowest point into the air
            air = np.maximum(0, np.sin(w - math.pi / 2)) ** 2
            pos[:, 1] += 40 * amp * air
            ang[:, J["LeftShoulder"], X] = ang[:, J["RightShoulder"], X] = -100 * air
        else:
            ang[:, J["LeftShoulder"], X] = ang[:, J["RightShoulder"], X] = -80 * dip
    elif action.startswith("wave"):
        side = "Left" if action.endswith("left") else "Right"
        sign = 1 if side == "Left" else -1
        ang[:, J[f"{side}Shoulder"], Z] = sign * 150
        ang[:, J[f"{side}Elbow"], Z] = sign * 30 * amp * np.sin(2 * w)
        ang[:, J["Chest"], Z] = -sign * 4
    elif action.startswith("kick"):
        side = "Left" if action.endswith("left") else "Right"
        pulse = np.maximum(0, np.sin(w)) ** 2
        ang[:, J[f"{side}Hip"], X] = -75 * amp * pulse
        ang[:, J[f"{side}Knee"], X] = 40 * amp * np.maximum(0, np.sin(w - 0.8)) ** 2
        other = "Right" if side == "Left" else "Left"
        ang[:, J[f"{other}Shoulder"], X] = -30 * pulse
        ang[:, J["Spine"], X] = -8 * pulse
    elif action.startswith("turn"):
        sign = 1 if action.endswith("left") else -1
        total = (180 if quick else 90) * rng.uniform(0.85, 1.15)
        yaw = sign * total * np.clip(t / t[-1], 0, 1)
        step = np.sin(2 * w)
        ang[:, J["LeftHip"], X], ang[:, J["RightHip"], X] = -12 * np.maximum(0, step), -12 * np.maximum(0, -step)
        ang[:, J["LeftKnee"], X], ang[:, J["RightKnee"], X] = 25 * np.maximum(0, step), 25 * np.maximum(0, -step)
    else:
        raise ValueError(action)
    return pos, yaw, ang


def compose(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fade: int = 6):
    """Clips one after the other: positions continue from where the last one ended, the angles
    cross-fade over `fade` frames."""
    pos, yaw, ang = parts[0]
    for p2, y2, a2 in parts[1:]:
        p2 = p2.copy()
        p2[:, [0, 2]] += pos[-1, [0, 2]] - p2[0, [0, 2]]
        y2 = y2 - y2[0] + yaw[-1]
        k = np.linspace(0, 1, fade)[:, None]
        blend = (1 - k)[:, :, None] * ang[-fade:] + k[:, :, None] * a2[:fade]
        ang = np.concatenate([ang[:-fade], blend, a2[fade:]])
        pb = (1 - k) * pos[-fade:] + k * p2[:fade]
        pos = np.concatenate([pos[:-fade], pb, p2[fade:]])
        yb = (1 - k[:, 0]) * yaw[-fade:] + k[:, 0] * y2[:fade]
        yaw = np.concatenate([yaw[:-fade], yb, y2[fade:]])
    return pos, yaw, ang


def frames_of(pos: np.ndarray, yaw: np.ndarray, ang: np.ndarray, rng: random.Random) -> np.ndarray:
    """Place the clip (a random start and heading) and write BVH channels [T, 3 + 3J]: root
    position, then each joint's Z, X, Y rotation; 1 degree of noise."""
    heading = rng.uniform(-45, 45)
    start = np.array([rng.uniform(-50, 50), 0.0, rng.uniform(-50, 50)])
    h = math.radians(heading)
    c, s = math.cos(h), math.sin(h)
    world = pos.copy()
    world[:, 0], world[:, 2] = c * pos[:, 0] + s * pos[:, 2], -s * pos[:, 0] + c * pos[:, 2]
    world += start
    ang = ang.copy()
    ang[:, 0, 2] += heading + yaw  # the root's Y rotation: heading (+Z turned towards +X)
    noise = np.array([[rng.gauss(0, 1.0) for _ in range(3 * ang.shape[1])] for _ in range(len(ang))])
    frames = np.concatenate([world, ang.reshape(len(ang), -1) + noise], axis=1)
    sk = skeleton()  # the angles as BVH writers give them: each in [-180, 180], the middle one in [-90, 90]
    return bvh.to_frames(sk, *bvh.rotations(sk, frames))


def prompt(action, speed: str, phrasing: str) -> tuple[str, str]:
    """(the prompt in a phrasing, the canonical caption)."""
    if isinstance(action, tuple):
        v = " then ".join(VERBS[a][0] for a in action)
        g = " then ".join(VERBS[a][1] for a in action)
    else:
        v, g = VERBS[action]
    canonical = f"a person {v} {speed}"
    return phrasing.format(v=v, g=g, s=speed), canonical


def rows(out: Path, rng: random.Random, n: int, split: str, held: dict, sk: bvh.Skeleton) -> list[dict]:
    """n clips of split `split` ("train"/"valid": the training phrasings, "heldout": the held-out)."""
    labels = [(a, s) for a in list(ACTIONS) + list(COMPOSITIONS) for s in SPEEDS]
    found = []
    for k in range(n):
        action, speed = labels[k % len(labels)] if split != "train" else rng.choice(labels)
        allowed = [p for p in range(len(PHRASINGS)) if (p == held[(action, speed)]) == (split == "heldout")]
        text, caption = prompt(action, speed, PHRASINGS[rng.choice(allowed)])
        T = rng.randint(48, 64)
        if isinstance(action, tuple):
            first = rng.randint(22, T - 22)
            part = compose([clip(action[0], speed, first + 3, rng), clip(action[1], speed, T - first + 3, rng)])
        else:
            part = clip(action, speed, T, rng)
        frames = frames_of(*part, rng)[:T]
        name = f"clips/{split}_{k}.bvh"
        bvh.write(out / name, sk, frames)
        label = " then ".join(action) if isinstance(action, tuple) else action
        found.append({"text": text, "bvh_frames": name, "action": label, "speed": speed, "caption": caption})
    return found


def inbetween_rows(out: Path, source: list[dict], split: str, known: int = 12) -> list[dict]:
    """The same clips as OFASys' in-betweening rows: .npz {frames, weights}, the first and last
    `known` frames given."""
    found = []
    for k, row in enumerate(source):
        _, frames = bvh.read(out / row["bvh_frames"])
        weights = np.zeros(len(frames), dtype=np.float32)
        weights[:known] = weights[-known:] = 1.0
        name = f"inbetween/{split}_{k}.npz"
        np.savez(out / name, frames=frames.astype(np.float32), weights=weights)
        found.append({"text": row["text"], "bvh_frames": name, "action": row["action"], "speed": row["speed"]})
    return found


def write(path: Path, found: list[dict]) -> None:
    with path.open("w") as f:
        for row in found:
            f.write(json.dumps(row) + "\n")


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "motion")
    ap.add_argument("--train", type=int, default=3000, help="training clips")
    ap.add_argument("--valid", type=int, default=224, help="validation clips (and as many held-out ones)")
    ap.add_argument("--inbetween", type=int, default=1000, help="in-betweening training clips")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    cap = os.environ.get("OFAC_MAX_ROWS")
    if cap:
        for name in ("train", "valid", "inbetween"):
            setattr(args, name, min(getattr(args, name), int(cap)))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force")}
    stamp = args.out / "settings.json"
    if not args.force and stamp.exists() and json.loads(stamp.read_text()) == settings:
        print(f"{args.out}: up to date")
        return args.out
    for sub in ("clips", "inbetween"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    sk = skeleton()
    bvh.write(args.out / "skeleton.bvh", sk, np.zeros((0, sk.channels)))
    labels = [(a, s) for a in list(ACTIONS) + list(COMPOSITIONS) for s in SPEEDS]
    held = {label: rng.randrange(len(PHRASINGS)) for label in labels}
    train = rows(args.out, rng, args.train, "train", held, sk)
    valid = rows(args.out, rng, args.valid, "valid", held, sk)
    write(args.out / "motion_train.jsonl", train)
    write(args.out / "motion_valid.jsonl", valid)
    write(args.out / "motion_heldout.jsonl", rows(args.out, rng, args.valid, "heldout", held, sk))
    write(args.out / "inbetween_train.jsonl", inbetween_rows(args.out, train[:args.inbetween], "train"))
    write(args.out / "inbetween_valid.jsonl", inbetween_rows(args.out, valid, "valid"))
    stamp.write_text(json.dumps(settings))
    print(f"{args.out}: text-to-motion, motion captioning and in-betweening datasets")
    return args.out


if __name__ == "__main__":
    main()
