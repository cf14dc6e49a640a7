"""Preprocessors on real files, and their diagnostics for bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import lower
from media import write_audio, write_image, write_video

from ofac.runtime.data.collate import collate
from ofac.runtime.errors import DataError
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.preprocess import struct, text
from ofac.runtime.preprocess.base import Context
from ofac.runtime.preprocess.box import dequantize, quantize
from ofac.runtime.preprocess.media import MediaError, load_audio, load_image
from ofac.runtime.vocab.tokenizer import BOS, EOS, MASK


def run(instruction, row, vocab, tmp_path, split="train", seed=0):
    return TaskRunner(lower(instruction), vocab, split)(row, np.random.default_rng(seed), tmp_path, ("rows.jsonl", 3))


# ---------------------------------------------------------------- images

@pytest.mark.parametrize("mode,ext", [("RGB", "png"), ("L", "png"), ("RGBA", "png"), ("P", "png"), ("RGB", "jpg"),
                                      ("I;16", "png")])
def test_image_modes_become_normalized_rgb(tmp_path, vocab, mode, ext):
    write_image(tmp_path / f"a.{ext}", size=(40, 30), box=(5, 5, 20, 20), mode=mode)
    s = run("[IMAGE:img] what? -> [TEXT:cap]", {"img": f"a.{ext}", "cap": "yes"}, vocab, tmp_path, "valid")
    x = s.encoder[0].data
    assert s.encoder[0].adaptor == "image_patch"
    assert x.shape == (3, 256, 256) and x.dtype == torch.uint8  # uint8 until it reaches the device
    y = collate([s]).to("cpu").inputs["image_patch"][0]
    assert y.dtype == torch.float32 and float(y.min()) >= -1.0 - 1e-5 and float(y.max()) <= 1.0 + 1e-5
    assert s.meta["images"]["img"].orig_size == (40, 30)


def test_device_normalization_matches_torchvision(tmp_path, vocab):
    from torchvision.transforms.v2 import functional as F

    write_image(tmp_path / "a.png", size=(50, 40), box=(3, 3, 30, 20))
    write_video(tmp_path / "v.mp4", frames=4)
    a = run("[IMAGE:img] what? -> [TEXT:cap]", {"img": "a.png", "cap": "x"}, vocab, tmp_path, "valid")
    v = run("[VIDEO:v] what? -> [TEXT:cap]", {"v": "v.mp4", "cap": "x"}, vocab, tmp_path, "valid")
    b = collate([a, v]).to("cpu")
    want = F.normalize(F.to_dtype(a.encoder[0].data, torch.float32, scale=True), [0.5] * 3, [0.5] * 3)
    assert torch.allclose(b.inputs["image_patch"][0], want, atol=1e-6)
    frames = F.to_dtype(v.encoder[0].data, torch.float32, scale=True)
    want = F.normalize(frames, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert torch.allclose(b.inputs["video_image_sequence"][0], want, atol=1e-5) and not b.norms


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image("r.jpg", tmp_path).size == (20, 40)


def test_image_from_bytes_array_and_pil(tmp_path):
    from PIL import Image

    write_image(tmp_path / "a.png", size=(12, 8))
    raw = (tmp_path / "a.png").read_bytes()
    assert load_image(raw).size == (12, 8)
    assert load_image(np.zeros((8, 12, 3), dtype=np.uint8)).size == (12, 8)
    assert load_image(torch.zeros(3, 8, 12)).size == (12, 8)
    assert load_image(Image.new("L", (12, 8))).mode == "RGB"


def test_corrupt_image_names_file_row_and_column(tmp_path, vocab):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError) as err:
        run("[IMAGE:img] what? -> [TEXT:cap]", {"img": "bad.png", "cap": "x"}, vocab, tmp_path)
    d = err.value.diagnostic
    assert err.value.file == "rows.jsonl" and err.value.row == 3 and err.value.column == "img"
    assert "unreadable image" in d.message and d.notes and "preprocess.image" in d.notes[0].message


def test_missing_image_file_and_missing_column(tmp_path, vocab):
    with pytest.raises(DataError, match="image file not found"):
        run("[IMAGE:img] what? -> [TEXT:cap]", {"img": "nope.png", "cap": "x"}, vocab, tmp_path)
    with pytest.raises(DataError) as err:
        run("[IMAGE:img] what? -> [TEXT:cap]", {"image": "a.png", "cap": "x"}, vocab, tmp_path)
    assert err.value.column == "img" and "this row has columns: image, cap" in str(err.value)


def test_image_mask_ratio_zeroes_the_centre(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(32, 32), box=(0, 0, 31, 31))
    s = run("what is the complete image of \" [IMAGE:img,mask_ratio=0.5] \"? -> [TEXT:cap]",
            {"img": "a.png", "cap": "x"}, vocab, tmp_path, "valid")
    assert [e.adaptor for e in s.encoder] == ["text", "image_patch", "text"]
    assert s.encoder[1].mask_border == 64
    x = collate([s]).to("cpu").inputs["image_patch"][0]
    assert float(x[:, 100:150, 100:150].abs().sum()) == 0 and float(x[:, :40, :40].abs().sum()) > 0


# ---------------------------------------------------------------- boxes

def test_box_round_trip_through_resize_within_half_a_bin(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(300, 200))
    runner = TaskRunner(lower("[IMAGE:img] where? -> [BOX:box]"), vocab, "train")
    box = [30.5, 20.0, 211.0, 177.3]
    bins = 1000
    s = runner({"img": "a.png", "box": box}, np.random.default_rng(0), tmp_path, ("r", 1))
    geometry = s.meta["images"]["img"]
    back = dequantize([vocab.bin_index[t] for t in s.target.target[:4]], bins, geometry)
    for got, want, side in zip(back, box, (300, 200) * 2):
        assert abs(got - want) <= 0.5 * side / (bins - 1) * 1.0001 + 1e-6


@pytest.mark.parametrize("preprocess", ["imagenet", "imagepretrain"])
def test_a_box_follows_its_image_through_crops_and_flips(tmp_path, vocab, preprocess, monkeypatch):
    """A red rectangle at the box, off-centre: after the training transform's random crops,
    resizes and flips, the transformed box frames the red pixels (colour changes switched off:
    what moves pixels is the geometry under test)."""
    from PIL import Image, ImageDraw

    from ofac.runtime.preprocess import image as image_module

    monkeypatch.setattr(image_module, "_with_rng", lambda ctx, transform, img: img)
    img = Image.new("RGB", (300, 200), (255, 255, 255))
    box = [40, 30, 130, 110]
    ImageDraw.Draw(img).rectangle(box, fill=(255, 0, 0))
    img.save(tmp_path / "a.png")
    runner = TaskRunner(lower(f"[IMAGE:img,preprocess={preprocess}] where? -> [BOX:box]"), vocab, "train")
    flips, seen = set(), 0
    for seed in range(16):
        s = runner({"img": "a.png", "box": box}, np.random.default_rng(seed), tmp_path, ("r", 1))
        g = s.meta["images"]["img"]
        flips.add(g.flipped)
        pixels = s.encoder[0].data.int()
        red = (pixels[0] > 200) & (pixels[1] < 60) & (pixels[2] < 60)  # [S, S]
        x0, y0, x1, y1 = (int(round(b / 999 * g.size)) for b in (vocab.bin_index[t] for t in s.target.target[:4]))
        if red.sum() < 50:  # the crop missed the rectangle: the box is clipped to nothing
            assert (x1 - x0) * (y1 - y0) < 50
            continue
        seen += 1  # within a pixel (resampling blurs the edges): the box holds red pixels, and all of them
        assert red[y0 + 1:y1 - 1, x0 + 1:x1 - 1].float().mean() > 0.9
        assert red[max(0, y0 - 1):y1 + 2, max(0, x0 - 1):x1 + 2].sum() > 0.97 * red.sum()
    assert seen >= 8
    if preprocess == "imagenet":
        assert flips == {True, False}  # both paths were exercised


def test_augmentation_is_deterministic_per_example_and_training_only(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(120, 90), box=(10, 10, 70, 60))
    row = {"img": "a.png", "cap": "x"}
    instr = "[IMAGE:img,preprocess=imagenet] what? -> [TEXT:cap]"
    train = [run(instr, row, vocab, tmp_path, "train", seed).encoder[0].data for seed in (1, 1, 2)]
    valid = [run(instr, row, vocab, tmp_path, "valid", seed).encoder[0].data for seed in (1, 2)]
    assert torch.equal(train[0], train[1]) and not torch.equal(train[0], train[2])
    assert torch.equal(valid[0], valid[1]) and not torch.equal(train[0], valid[0])


def test_quantize_clamps_and_orders():
    assert quantize([-5, 0, 300, 256], 256, 1000) == [0, 0, 999, 999]


def test_boxes_must_be_four_ordered_numbers(tmp_path, vocab):
    write_image(tmp_path / "a.png")
    for bad in ("1,2,3", [5, 5, 1, 1], "a,b,c,d"):
        with pytest.raises(DataError, match="box"):
            run("[IMAGE:img] where? -> [BOX:box]", {"img": "a.png", "box": bad}, vocab, tmp_path)


def test_detection_repeats_boxes_and_labels(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(64, 64))
    row = {"img": "a.png", "boxes": [[0, 0, 10, 10], "20,20,40,40"], "labels": ["red box", "dot"]}
    s = run("[IMAGE:img] objects? -> ([BOX:boxes] [TEXT:labels])*", row, vocab, tmp_path, "valid")
    target = s.target.target
    bins = [t for t in target if t in vocab.bin_index]
    assert len(bins) == 8 and target[-1] == EOS and all(s.target.loss_mask)
    assert vocab.decode(target) == "red box dot"
    with pytest.raises(DataError, match="different lengths"):
        run("[IMAGE:img] objects? -> ([BOX:boxes] [TEXT:labels])*", {**row, "labels": ["x"]}, vocab, tmp_path)


# ---------------------------------------------------------------- text

def test_text_group_bos_eos_prefix_and_loss(tmp_path, vocab):
    s = run('is " [TEXT:s] " good? -> is " [TEXT:s,no_loss] " good? [TEXT:label,closed_set]',
            {"s": "the quick fox", "label": "yes"}, vocab, tmp_path, "valid")
    (enc,) = s.encoder
    assert enc.data[0] == BOS and enc.data[-1] == EOS
    t = s.target
    n_answer = len(vocab.encode("yes"))
    assert t.loss_mask == [False] * t.prefix + [True] * (n_answer + 1)
    assert t.inputs[0] == BOS and t.target[-1] == EOS and len(t.inputs) == len(t.target)
    assert vocab.decode(t.target[t.prefix:]) == "yes"


def test_text_attributes(tmp_path, vocab):
    ctx = Context(vocab, "valid", np.random.default_rng(0))
    assert vocab.decode(text.text("Hello, World!", {"uncased": True, "no_punctuation": True}, ctx).ids) == \
        "hello world"
    assert len(text.text("the quick brown fox jumps", {"max_length": 2}, ctx).ids) == 2


def test_mask_ratio_masks_spans_at_train_time_only(tmp_path, vocab):
    instr = 'what is the complete text of " [TEXT:s,mask_ratio=0.3] "? -> [TEXT:s]'
    sentence = "the quick brown fox jumps over the lazy dog " * 3
    train = run(instr, {"s": sentence}, vocab, tmp_path, "train")
    valid = run(instr, {"s": sentence}, vocab, tmp_path, "valid")
    assert MASK in train.encoder[0].data.tolist() and MASK not in valid.encoder[0].data.tolist()
    assert len(train.encoder[0].data) < len(valid.encoder[0].data)  # spans collapse to one <mask>
    assert train.target.target == valid.target.target  # the target is the clean text


def test_span_mask_covers_the_ratio():
    ids = list(range(100, 300))
    out = text.span_mask(ids, 0.3, np.random.default_rng(1))
    kept = [t for t in out if t != MASK]
    assert len(ids) - len(kept) == 60 and set(kept) <= set(ids)


def test_noise_ratio_corrupts_inputs_not_targets(tmp_path, vocab):
    s = run("summarize [TEXT:s] -> [TEXT:t,noise_ratio=0.9]", {"s": "a", "t": "the quick brown fox jumps"},
            vocab, tmp_path, "train")
    t = s.target
    assert t.inputs[1:] != t.target[:-1] and vocab.decode(t.target) == "the quick brown fox jumps"


def test_truncation_keeps_eos(tmp_path, vocab):
    compiled = lower("[TEXT:s] -> [TEXT:t]")
    s = TaskRunner(compiled, vocab, "valid")({"s": "x " * 2000, "t": "y " * 1000}, np.random.default_rng(0))
    assert s.encoder[0].data.shape[0] == 512 and int(s.encoder[0].data[-1]) == EOS
    assert len(s.target.target) == 127 and s.target.target[-1] == EOS  # BOS + 126 + EOS = max_length 128


def test_test_split_reads_no_target(tmp_path, vocab):
    s = run("[TEXT:s] -> answer: [TEXT:t]", {"s": "question"}, vocab, tmp_path, "test")
    assert s.target.prefix == len(vocab.encode("answer:")) and s.target.target[-1] == EOS


# ---------------------------------------------------------------- audio

def test_audio_fbank_from_flac_and_stereo_wav(tmp_path, vocab):
    write_audio(tmp_path / "a.flac", seconds=1.0, rate=22050)
    write_audio(tmp_path / "b.wav", seconds=1.0, rate=8000, channels=2)
    for name in ("a.flac", "b.wav"):
        s = run("[AUDIO:wav] what is said? -> [TEXT:t]", {"wav": name, "t": "yes"}, vocab, tmp_path, "valid")
        feats = s.encoder[0].data
        assert s.encoder[0].adaptor == "audio_fbank" and feats.shape[1] == 80
        assert 95 <= feats.shape[0] <= 100  # 10 ms frames at 16 kHz after resampling
        assert abs(float(feats.mean())) < 1e-3 and abs(float(feats.std(0).mean()) - 1) < 0.05


def test_audio_dict_as_datasets_gives_it(tmp_path, vocab):
    wav = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    w, rate = load_audio({"array": wav, "sampling_rate": 16000})
    assert rate == 16000 and w.shape == (16000,)
    with pytest.raises(MediaError, match="sample rate"):
        load_audio(wav)


def test_spec_augment_only_in_training(tmp_path, vocab):
    write_audio(tmp_path / "a.wav", seconds=2.0, rate=16000)
    row = {"wav": "a.wav", "t": "x"}
    train = run("[AUDIO:wav] said? -> [TEXT:t]", row, vocab, tmp_path, "train").encoder[0].data
    valid = run("[AUDIO:wav] said? -> [TEXT:t]", row, vocab, tmp_path, "valid").encoder[0].data
    assert (train == 0).sum() > (valid == 0).sum()


def test_corrupt_audio(tmp_path, vocab):
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    with pytest.raises(DataError, match="unreadable audio"):
        run("[AUDIO:wav] said? -> [TEXT:t]", {"wav": "bad.wav", "t": "x"}, vocab, tmp_path)


# ---------------------------------------------------------------- video

def test_video_frames_are_sampled_uniformly(tmp_path, vocab):
    write_video(tmp_path / "v.mp4", frames=12)
    s = run("[VIDEO:v] what happens? -> [TEXT:t]", {"v": "v.mp4", "t": "x"}, vocab, tmp_path, "valid")
    x = s.encoder[0].data
    assert s.encoder[0].adaptor == "video_image_sequence" and x.shape == (8, 3, 256, 256)
    assert not torch.equal(x[0], x[-1])  # the shape moves between first and last frame


def test_training_clips_are_mirrored_only_when_asked(tmp_path, vocab):
    """A mirrored clip moves the other way, so "moves left" would become a wrong label: the
    default `video` preprocessor never flips; `video_augment` flips about half the clips."""
    write_video(tmp_path / "v.mp4", frames=12)
    row = {"v": "v.mp4", "t": "x"}
    valid = run("[VIDEO:v] what happens? -> [TEXT:t]", row, vocab, tmp_path, "valid").encoder[0].data
    plain = [run("[VIDEO:v] what happens? -> [TEXT:t]", row, vocab, tmp_path, "train", seed).encoder[0].data
             for seed in range(8)]
    assert all(torch.equal(x, valid) for x in plain)
    augmented = [run("[VIDEO:v,preprocess=video_augment] what happens? -> [TEXT:t]", row, vocab, tmp_path, "train",
                     seed).encoder[0].data for seed in range(8)]
    mirrored = [torch.equal(x, valid.flip(-1)) for x in augmented]
    assert all(m or torch.equal(x, valid) for m, x in zip(mirrored, augmented)) and 0 < sum(mirrored) < 8


def test_corrupt_video(tmp_path, vocab):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(DataError, match="unreadable video"):
        run("[VIDEO:v] what? -> [TEXT:t]", {"v": "bad.mp4", "t": "x"}, vocab, tmp_path)


# ---------------------------------------------------------------- decoded media kept between epochs

def test_decoded_media_are_reused_until_the_file_changes(tmp_path, vocab):
    """The second epoch of a row reads its decoded frames and fbank from memory; augmentation
    still draws afresh; a rewritten file is decoded again; a cached value is never written."""
    from ofac.runtime.preprocess.memo import MEDIA

    MEDIA.clear()
    write_video(tmp_path / "v.mp4", frames=12)
    write_audio(tmp_path / "a.wav", seconds=1.0, rate=16000)
    video, speech = "[VIDEO:v,preprocess=video_augment] what? -> [TEXT:t]", "[AUDIO:wav] said? -> [TEXT:t]"
    row = {"v": "v.mp4", "wav": "a.wav", "t": "x"}
    first = run(video, row, vocab, tmp_path, "valid").encoder[0].data.clone()
    hits = MEDIA.hits
    clips = [run(video, row, vocab, tmp_path, "train", seed).encoder[0].data for seed in range(8)]
    assert MEDIA.hits == hits + 8
    assert any(torch.equal(c, first.flip(-1)) for c in clips) and any(torch.equal(c, first) for c in clips)
    assert torch.equal(run(video, row, vocab, tmp_path, "valid").encoder[0].data, first)  # mirroring copied
    plain = run(speech, row, vocab, tmp_path, "valid").encoder[0].data.clone()
    augmented = [run(speech, row, vocab, tmp_path, "train", seed).encoder[0].data for seed in range(3)]
    assert all((a == 0).sum() > (plain == 0).sum() for a in augmented)
    assert torch.equal(run(speech, row, vocab, tmp_path, "valid").encoder[0].data, plain)  # SpecAugment copied
    write_video(tmp_path / "v.mp4", frames=6, size=(48, 48))  # rewritten: decoded again
    os.utime(tmp_path / "v.mp4", ns=(1, 1))
    misses = MEDIA.misses
    assert not torch.equal(run(video, row, vocab, tmp_path, "valid").encoder[0].data, first)
    assert MEDIA.misses == misses + 1


def test_the_media_memo_keeps_to_its_budget():
    from ofac.runtime.preprocess.memo import Memo

    memo = Memo(budget=3 * 400)
    for i in range(5):
        memo.get(i, lambda: np.zeros(100, np.float32))  # 400 bytes each
    assert memo.bytes == 1200 and list(memo.items) == [2, 3, 4]
    memo.get(2, lambda: pytest.fail("kept"))  # most recently used now
    memo.get(5, lambda: np.zeros(100, np.float32))
    assert list(memo.items) == [4, 2, 5]
    with pytest.raises(ValueError):
        memo.get(5, lambda: None)[0] = 1.0  # read-only
    assert memo.get(None, lambda: "made") == "made" and len(memo.items) == 3


# ---------------------------------------------------------------- struct, phone, motion

def test_struct_linearization():
    assert struct.linearize_table([["Alan Turing", "born_in", "London"], ["x", "y"]]) == \
        "Alan Turing : born in : London | x : y"
    assert struct.linearize_table({"header": ["name", "age"], "rows": [["ann", 3]]}) == "name : age | ann : 3"
    db = {"db_id": "shapes", "tables": {"shapes": {"colour": ["red", "blue"], "id": []}}}
    assert struct.linearize_database(db) == " | shapes | shapes : colour ( red , blue ) , id"
    with pytest.raises(ValueError):
        struct.linearize_table(42)


def test_struct_slot_lowercases_and_truncates(tmp_path, vocab):
    s = run("knowledge: [STRUCT:t,max_length=3] -> [TEXT:x]", {"t": [["Alan", "Born", "London"]], "x": "y"},
            vocab, tmp_path, "valid")
    assert len(s.encoder[0].data) == 2 + len(vocab.encode("knowledge:")) + 3


def test_phones(tmp_path, vocab):
    s = run("[PHONE:p] -> [TEXT:t]", {"p": "AH B ZZ K", "t": "x"}, vocab, tmp_path, "valid")
    ids = s.encoder[0].data.tolist()[1:-1]
    assert ids == [vocab.phone_ids["AH"], vocab.phone_ids["B"], 3, vocab.phone_ids["K"]]  # ZZ is <unk>


def test_a_missing_motion_file_names_the_row(tmp_path, vocab):
    with pytest.raises(DataError, match="motion file not found.*row 3, column `m`"):
        run("motion: [MOTION:m] -> [TEXT:t]", {"m": "a.bvh", "t": "x"}, vocab, tmp_path)


def test_a_box_before_its_image_is_transformed_with_it(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(64, 64))
    s = run("region: [BOX:b] of [IMAGE:img] -> [TEXT:t]", {"b": [0, 0, 32, 32], "img": "a.png", "t": "x"},
            vocab, tmp_path, "valid")
    text, image = s.encoder[0].data.tolist(), s.encoder[1]
    assert image.adaptor == "image_patch"
    assert [vocab.bin_index[t] for t in text if t in vocab.bin_index] == [0, 0, 500, 500]  # half the side
