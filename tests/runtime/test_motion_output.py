"""MOTION, part by part: BVH read/write and its diagnostics, the motion_6d features and their
inverse, the motion statistics, the noised batch, the diffusion loss, the DDIM sampler (against
diffusers), classifier-free guidance and known frames, and a tiny run that trains, answers with
`Output.motion` and writes BVH and GIF files.  A run that learns: test_motion_training.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ofac.runtime.codec import motion
from ofac.runtime.data.targets import motion_batch
from ofac.runtime.exec.sample import MotionTarget
from ofac.runtime.generate import diffusion
from ofac.runtime.model.heads.motion import diffusion as diffusion_loss
from ofac.runtime.preprocess import bvh
from ofac.runtime.preprocess import motion as features

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("motion") / "motion"
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "make_motion.py"), "--out", str(out), "--train",
                           "40", "--valid", "28", "--inbetween", "20"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return out


def angle_gap(a, b):
    return np.abs((a - b + 180) % 360 - 180)


def test_bvh_files_round_trip_through_features_to_1e_4_degrees(clips):
    for path in sorted((clips / "clips").glob("*.bvh"))[:30]:
        sk, frames = bvh.read(path)
        back = motion.Motion(sk, features.encode(sk, frames)).frames
        assert np.abs(back[:, :3] - frames[:, :3]).max() < 1e-6  # root position
        assert angle_gap(back[:, 3:], frames[:, 3:]).max() < 1e-4
        again = bvh.parse(bvh.dumps(sk, frames))
        assert again[0].same_as(sk) and np.abs(again[1] - frames).max() < 1e-6


def test_any_rotation_order_keeps_the_rotations(clips):
    """Other BVH rotation orders and angles outside the canonical range: the angles written back
    may be another decomposition, but every joint's rotation is the same."""
    sk, frames = bvh.read(sorted((clips / "clips").glob("*.bvh"))[0])
    rng = np.random.default_rng(0)
    for order in ("XYZ", "YXZ", "ZYX"):
        sk.order = [order] * sk.joints
        wild = frames.copy()
        wild[:, 3:] = rng.uniform(-179, 179, wild[:, 3:].shape)
        back = motion.Motion(sk, features.encode(sk, wild)).frames
        assert np.abs(bvh.rotations(sk, back)[1] - bvh.rotations(sk, wild)[1]).max() < 1e-9


def test_root_velocity_is_read_in_the_heading_frame(clips):
    """The same clip facing another way has the same velocity features: only the root position
    and the root rotation differ."""
    sk, frames = bvh.read(sorted((clips / "clips").glob("train_*.bvh"))[0])
    pos, mats = bvh.rotations(sk, frames)
    turn = bvh.euler_to_matrix(np.array([0.0, 0.0, 70.0]), "ZXY")  # 70 degrees about +Y
    turned_pos = pos @ turn.T
    turned = mats.copy()
    turned[:, 0] = turn @ mats[:, 0]
    a = features.encode(sk, frames)
    b = features.encode(sk, bvh.to_frames(sk, turned_pos, turned))
    assert np.abs(a[:, 3:6] - b[:, 3:6]).max() < 1e-9
    assert np.abs(a[:, 12:] - b[:, 12:]).max() < 1e-9  # every joint but the root


@pytest.mark.parametrize("text,fault", [
    ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Zrotation Xrotation Yrotation\n}\n", "line 5"),
    ("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 zero\n", "line 4: expected a number, found `zero`"),
    ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation "
     "Yrotation\n}\nMOTION\nFrames: 2\nFrame Time: 0.05\n1 2 3 4 5 6\n", "2 frames of 6 channels need 12 values"),
])
def test_bad_bvh_files_say_where(text, fault):
    with pytest.raises(bvh.BvhError, match=fault):
        bvh.parse(text)


def test_statistics_z_score_and_rectify_keeps_proper_rotations(clips, tmp_path):
    feats = [features.encode(*bvh.read(p)) for p in sorted((clips / "clips").glob("train_*.bvh"))]
    sk = bvh.read(next((clips / "clips").glob("train_*.bvh")))[0]
    codec = motion.MotionCodec.save(tmp_path / "m", sk, feats)
    x = codec.normalize(np.concatenate(feats))
    assert abs(float(x.mean())) < 1e-3 and 0.5 < float(x.std()) < 1.01
    again = motion.MotionCodec.load(tmp_path / "m")
    assert again.skeleton.same_as(sk) and again.length == int(np.median([len(f) for f in feats]))
    noisy = codec.normalize(feats[0]) + np.random.default_rng(0).normal(0, 0.3, feats[0].shape).astype(np.float32)
    mats = features.rectify(codec.denormalize(codec.rectify(noisy))[:, 6:].reshape(len(noisy), -1, 6))
    assert np.abs(np.einsum("tjab,tjac->tjbc", mats, mats) - np.eye(3)).max() < 1e-5


def target(length=6, width=4, seed=0, known=None, drop=0.0):
    x = np.random.default_rng(seed).standard_normal((length, width)).astype(np.float32)
    k = np.zeros(length, bool) if known is None else known
    return MotionTarget(x, k, length, seed, drop)


def test_the_batch_noises_each_row_from_its_seed_and_keeps_known_frames_clean():
    known = np.array([True, True, False, False, False, True])
    a = motion_batch([target(seed=1, known=known), target(length=4, seed=2)])
    b = motion_batch([target(seed=1, known=known), target(length=4, seed=2)])
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.level, b.level)
    assert np.array_equal(a.inputs[0][known], a.target[0][known])
    assert not np.allclose(a.inputs[0][~known], a.target[0][~known])
    assert a.loss_mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    drops = motion_batch([target(seed=s, drop=0.3) for s in range(400)]).drop
    assert 0.2 < drops.mean() < 0.4


def test_the_diffusion_loss_weights_low_noise_rows_up_by_sqrt_snr():
    batch = motion_batch([target(seed=s) for s in range(2)]).map(torch.from_numpy)
    batch.level[:] = torch.tensor([10, 900])
    out = batch.target + 0.1
    plain = diffusion_loss(out, batch, {"weighting": "none", "weight": 1.0})
    snr = diffusion_loss(out, batch, {"weighting": "snr", "weight": 1.0})
    assert float(plain.total) == pytest.approx(0.1 * 12, rel=1e-5)
    w = diffusion.snr_weight(np.array([10, 900]))
    assert float(snr.total) == pytest.approx(0.1 * 6 * w.sum(), rel=1e-4)
    assert float(snr.nll) == pytest.approx(float(plain.nll))


def test_the_sampler_is_diffusers_ddim():
    diffusers = pytest.importorskip("diffusers")
    s = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False,
                                prediction_type="sample", set_alpha_to_one=True, steps_offset=0,
                                timestep_spacing="leading")
    assert np.abs(s.alphas_cumprod.numpy() - diffusion.ALPHAS_CUMPROD).max() < 1e-6
    s.set_timesteps(20)
    assert s.timesteps.tolist() == diffusion.timesteps(20).tolist()
    pull = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)

    def denoise(x, level, conditioned):  # any function of x_t and the level
        return (0.5 * x + pull * (1 - level[:, None, None] / 1000)).astype(np.float32)

    ours = np.stack(diffusion.sample(denoise, np.array([5, 5]), 3, diffusion.DiffusionConfig(20, 0.0, seed=3)))
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32))
    for t in s.timesteps:
        x0 = torch.from_numpy(denoise(x.numpy(), np.full(2, int(t)), True))
        x = s.step(x0, t, x, eta=0.0).prev_sample
    assert np.abs(ours - x.numpy()).max() < 1e-4


def test_guidance_mixes_conditioned_and_unconditioned_and_known_frames_stay():
    cond, uncond = np.full((1, 4, 2), 2.0, np.float32), np.full((1, 4, 2), 1.0, np.float32)
    out = diffusion.sample(lambda x, lv, c: cond if c else uncond, np.array([4]), 2,
                           diffusion.DiffusionConfig(steps=5, guidance=3.0))[0]
    assert np.allclose(out, 4 * 2.0 - 3 * 1.0)  # (1 + w) cond - w uncond; the last step lands on x0
    mask = np.array([[True, False, False, True]])
    values = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
    fed = []

    def denoise(x, lv, c):
        fed.append(x.copy())
        return cond

    kept = diffusion.sample(denoise, np.array([4]), 2, diffusion.DiffusionConfig(steps=5, guidance=0.0),
                            known=(mask, values))[0]
    assert np.array_equal(kept[[0, 3]], values[0, [0, 3]]) and np.allclose(kept[[1, 2]], 2.0)
    assert all(np.array_equal(x[0, [0, 3]], values[0, [0, 3]]) for x in fed)  # given frames are fed clean


TASKS = """
task text_to_motion {{
    instruction: motion capture: [TEXT:text] -> [MOTION:bvh_frames,preprocess=motion_6d,adaptor=motion_6d]
    train = {data}/motion_train.jsonl
    valid = {data}/motion_valid.jsonl
    micro_batch_size = 8
    generate {{ steps = 4 }}
}}
task caption {{
    instruction: [MOTION:bvh_frames,preprocess=motion_6d] what is the person doing? -> [TEXT:caption]
    train = {data}/motion_train.jsonl
    valid = {data}/motion_valid.jsonl
    micro_batch_size = 8
}}
task inbetween {{
    instruction: motion capture: [TEXT:text] -> [MOTION:bvh_frames,preprocess=motion_6d,adaptor=motion_6d]
    train = {data}/inbetween_train.jsonl
    valid = {data}/inbetween_valid.jsonl
    bvh_header = skeleton.bvh
    micro_batch_size = 8
    generate {{ steps = 4 }}
}}
model {{ d_model = 32  ffn_dim = 64  encoder_layers = 1  decoder_layers = 1  heads = 2  vocab_size = 300 }}
train {{ steps = 3  eval_every = 3  out = {out} }}
"""


@pytest.fixture(scope="module")
def run(clips, tmp_path_factory):
    from ofac import compiler
    from ofac.runtime.train.recipe import TrainingRun

    tmp = tmp_path_factory.mktemp("motion-run")
    path = tmp / "m.ofa"
    path.write_text(TASKS.format(data=clips, out=tmp / "run"))
    TrainingRun(compiler.load(path), tmp, out=tmp / "run", log=lambda *a: None).fit()
    return tmp / "run"


def test_a_run_counts_statistics_trains_and_validates_every_motion_task(run):
    stats = json.loads((run / "tokenizers" / "motion" / "config.json").read_text())
    assert stats["clips"] == 40 + 20 and len(stats["mean"]) == 6 + 6 * 12
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [m for m in metrics if "valid" in json.dumps(m)][-1]
    text = json.dumps(last)
    assert "mpjpe" in text and "exact_match" in text


def test_answers_are_motions_in_the_training_skeleton(run, clips, tmp_path):
    from ofac.runtime.serve.answer import OFASys

    model = OFASys.from_pretrained(run)
    out = model.inference("text_to_motion", {"text": "a person walks slowly"}, steps=3, length=30)
    assert out.motion is not None and out.bvh_motion.shape == (30, 3 + 3 * 12)
    written = out.save_bvh(tmp_path / "walk")
    sk, frames = bvh.read(written)
    assert written.suffix == ".bvh" and sk.same_as(bvh.read_header(clips / "skeleton.bvh"))
    assert np.abs(frames - out.bvh_motion).max() < 1e-5
    gif = Image.open(out.save_gif(tmp_path / "walk"))
    assert gif.format == "GIF" and gif.n_frames == 30
    with np.load(out.save_features(tmp_path / "walk")) as z:
        assert z["feature"].shape == (30, 78)
    again = model.inference("text_to_motion", {"text": "a person walks slowly"}, steps=3, length=30)
    assert np.array_equal(again.bvh_motion, out.bvh_motion)  # seed 0 unless asked
    other = model.inference("text_to_motion", {"text": "a person walks slowly"}, steps=3, length=30, seed=1)
    assert not np.allclose(other.bvh_motion, out.bvh_motion)
    assert "bvh" in out.to_dict() and out.to_dict()["frames"] == 30


def test_in_betweening_keeps_the_given_frames(run, clips):
    from ofac.runtime.serve.answer import OFASys

    row = json.loads((clips / "inbetween_valid.jsonl").read_text().splitlines()[0])
    model = OFASys.from_pretrained(run)
    out = model.inference("inbetween", {"bvh_frames": row["bvh_frames"], "text": row["text"]}, steps=3,
                          base_dir=clips)
    with np.load(clips / row["bvh_frames"]) as z:
        frames, weights = z["frames"], z["weights"] > 0.5
    assert len(out.motion) == len(frames)
    sk = out.motion.skeleton
    assert np.array_equal(out.motion.known, weights)
    got = out.motion.positions()
    truth = bvh.forward_kinematics(sk, *bvh.rotations(sk, frames.astype(np.float64)))
    assert np.abs(got[weights] - truth[weights]).max() < 1e-3  # cm


def test_motion_captioning_reads_a_clip(run, clips):
    from ofac.runtime.serve.answer import OFASys

    out = OFASys.from_pretrained(run).inference("caption", {"bvh_frames": "clips/valid_0.bvh"}, base_dir=clips)
    assert isinstance(out.text, str)


def test_npy_frames_without_a_header_name_the_row(clips, tmp_path):
    from ofac import compiler
    from ofac.runtime.errors import DataError
    from ofac.runtime.train.recipe import TrainingRun

    np.save(tmp_path / "a.npy", np.zeros((20, 39)))
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": "a person walks", "m": "a.npy"}) + "\n")
    (tmp_path / "t.ofa").write_text("task t {\n  instruction: motion: [TEXT:text] -> [MOTION:m,preprocess=motion_6d,"
                                    "adaptor=motion_6d]\n  train = rows.jsonl\n}\ntrain { steps = 1 }\n")
    with pytest.raises(DataError) as err:
        TrainingRun(compiler.load(tmp_path / "t.ofa"), tmp_path, out=tmp_path / "run", log=lambda *a: None).fit()
    e = err.value
    assert "bvh_header" in str(e) and "rows.jsonl" in str(e.file) and e.row == 1 and e.column == "m"


def test_the_export_samples_the_same_motions_without_torch(run, clips, tmp_path):
    from test_export import BLOCK_TORCH

    from ofac.runtime.serve.answer import OFASys
    from ofac.runtime.serve.export import export

    folder = export(run, out=tmp_path / "onnx", log=lambda *a: None)
    rows = {"text_to_motion": [{"text": "a person walks slowly"}, {"text": "a person jumps quickly"}],
            "caption": [{"bvh_frames": "clips/valid_0.bvh"}]}
    script = BLOCK_TORCH + """
import json
import ofac
model = ofac.load(sys.argv[1])
t2m = model.inference("text_to_motion", json.loads(sys.argv[2]), steps=3, length=20)
cap = model.inference("caption", json.loads(sys.argv[3]), base_dir=sys.argv[4])
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
print(json.dumps({"frames": [o.bvh_motion.tolist() for o in t2m], "caption": cap[0].text, "torch": loaded}))
"""
    proc = subprocess.run([sys.executable, "-c", script, str(folder), json.dumps(rows["text_to_motion"]),
                           json.dumps(rows["caption"]), str(clips)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["torch"] == []
    eager = OFASys.from_pretrained(run)
    want = eager.inference("text_to_motion", rows["text_to_motion"], steps=3, length=20)
    for frames, o in zip(got["frames"], want):
        assert np.abs(np.array(frames) - o.bvh_motion).max() < 1e-2  # degrees and cm
    assert got["caption"] == eager.inference("caption", rows["caption"][0], base_dir=clips).text


def test_anchor_frame_turns_and_moves_the_clip_to_face_forward_at_the_origin(clips):
    sk, frames = bvh.read(sorted((clips / "clips").glob("train_*.bvh"))[3])
    f = features.encode(sk, frames, anchor=5)
    assert np.allclose(f[5, [0, 2]], 0, atol=1e-9)  # at the origin on the floor, height kept
    assert f[5, 1] == pytest.approx(frames[5, 1])
    root = motion.Motion(sk, f).positions()[:, 0]
    mats = features.rectify(f[:, 6:].reshape(len(f), -1, 6))
    assert mats[5, 0][0, 2] == pytest.approx(0, abs=1e-9) and mats[5, 0][2, 2] > 0  # faces +Z
    plain = motion.Motion(sk, features.encode(sk, frames)).positions()[:, 0]
    steps = np.linalg.norm(np.diff(root, axis=0), axis=1)  # the same path, turned and moved
    assert np.allclose(steps, np.linalg.norm(np.diff(plain, axis=0), axis=1), atol=1e-6)
