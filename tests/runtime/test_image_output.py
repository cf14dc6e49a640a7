"""IMAGE outputs, part by part: the image tokenizer (network, training, files, code cache), the
code target and head, generation constrained to codes, the image postprocessor and metrics, and
`Output.image`.  End to end (a run, its export) in test_image_training.py."""
from __future__ import annotations

import base64
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import lower

from ofac.runtime.codec.image import ImageCodecConfig
from ofac.runtime.codec.tokenizer import ImageTokenizer, image_key
from ofac.runtime.codec.training import CodecTraining, to_unit, train_codec
from ofac.runtime.data.collate import collate
from ofac.runtime.data.corpus import reserved_for
from ofac.runtime.evaluate.metrics import psnr, ssim
from ofac.runtime.evaluate.scorer import Scorer
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.generate.eager import GenerateConfig, generate
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.preprocess.image_codes import parse_codes
from ofac.runtime.serve.answer import Output
from ofac.runtime.vocab.tokenizer import BOS, train_vocab

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import make_images  # noqa: E402

T2I = "what is the complete image? caption: [TEXT:text] -> [IMAGE,preprocess=image_vqgan,adaptor=image_vqgan]"


def scenes(n: int, seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    import random

    rng = random.Random(seed)
    attrs = [rng.choice(make_images.captions()) for _ in range(n)]
    return np.stack([np.asarray(make_images.draw(make_images.single(rng, *a))) for a in attrs]), attrs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tokenizer trained briefly on shapes scenes, saved; and its held-out images."""
    pixels, _ = scenes(240)
    torch.manual_seed(0)
    codec, report = train_codec(pixels[:200], ImageCodecConfig(), CodecTraining(steps=150))
    folder = tmp_path_factory.mktemp("tok") / "image"
    return ImageTokenizer.save(folder, codec, report, {"steps": 150}), pixels[200:]


def test_decoding_the_codes_gives_the_forward_reconstruction(trained):
    """The codes `encode` picks are the quantizer's, and `decode` lays their vectors out as the
    forward pass does (a transposed layout would scramble every image and still run)."""
    tok, images = trained
    x = to_unit(images[:8])
    with torch.no_grad():
        rec, codes, _ = tok.codec(x)
        assert torch.equal(tok.codec.encode(x), codes.flatten(1))
        assert torch.allclose(tok.codec.decode(tok.codec.encode(x)), rec.clamp(-1, 1), atol=1e-5)


def test_the_tokenizer_reconstructs_unseen_images_better_than_their_mean(trained):
    tok, images = trained
    rec = tok.decode(tok.encode(images)).astype(np.float64) / 255
    truth = images.astype(np.float64) / 255
    mean = truth.mean(axis=0, keepdims=True)
    got, baseline = psnr(list(rec * 255), list(truth * 255)), psnr([mean[0] * 255] * len(truth), list(truth * 255))
    assert got > baseline + 3, (got, baseline)
    assert tok.report["psnr"] > 15 and 0 < tok.report["ssim"] <= 1 and tok.report["codes_used"] > 16


def test_a_saved_tokenizer_loads_and_decodes_alike(trained, tmp_path):
    tok, images = trained
    again = ImageTokenizer.load(tok.folder)
    codes = tok.encode(images[:4])
    assert again.cfg == tok.cfg and again.report == tok.report
    assert np.array_equal(again.decode(codes), tok.decode(codes))
    copied = again.copy_to(tmp_path / "copy")
    assert np.array_equal(copied.decode(codes), tok.decode(codes)) and not copied.cache


def test_the_code_cache_keys_files_by_path_and_content_by_hash(trained, tmp_path):
    tok, images = trained
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(images[0]).save(path)
    key = image_key("a.png", tmp_path)
    assert key == image_key(str(path), None) and key.startswith("file:")
    codes = tok.codes_of("a.png", tmp_path)
    assert key in tok.cache and np.array_equal(tok.codes_of("a.png", tmp_path), codes)
    os.utime(path, ns=(1, 1))  # a changed file is another image
    assert image_key("a.png", tmp_path) != key
    assert image_key(images[0], None) == image_key(images[0].copy(), None) != image_key(images[1], None)
    assert image_key(path.read_bytes(), None).startswith("sha1:")
    tok.save_codes()
    assert key in ImageTokenizer.load(tok.folder).cache


def test_a_cell_of_code_numbers_is_taken_as_codes():
    assert parse_codes("1 2 3") == [1, 2, 3] and parse_codes("4,5") == [4, 5] and parse_codes([7, 8]) == [7, 8]
    assert parse_codes("img/0.png") is None and parse_codes("12") is None and parse_codes(np.arange(3)) == [0, 1, 2]


# ------------------------------------------------------------------------------ target and head

@pytest.fixture(scope="module")
def setup(trained):
    tok, images = trained
    task = lower(T2I)
    vocab = train_vocab(["what is the complete image? caption:", "a red circle", "a blue square"] * 5, 300,
                        reserved_for([task]))
    return task, vocab, {"image": tok}, images


def _sample(setup, split: str, tmp_path):
    from PIL import Image

    task, vocab, resources, images = setup
    Image.fromarray(images[0]).save(tmp_path / "x.png")
    runner = TaskRunner(task, vocab, split, resources=resources)
    return runner({"text": "a red circle", "2": "x.png"}, np.random.default_rng(0), tmp_path)


def test_an_image_target_is_its_codes_teacher_forced(setup, tmp_path):
    task, vocab, resources, images = setup
    s = _sample(setup, "valid", tmp_path)
    codes = resources["image"].encode(images[:1])[0]
    first = vocab.code_ids[0]
    assert s.head == "codes"
    assert s.target.target == codes.tolist() and s.target.loss_mask == [True] * 64 and s.target.prefix == 0
    assert s.target.inputs == [BOS] + [first + c for c in codes[:-1].tolist()]
    assert np.array_equal(s.meta["pixels"]["2"], images[0])  # the reference, for the metrics
    gen = task.programs[0].only("generate")
    assert gen.get("min_len") == gen.get("max_len") == 64
    at_test = _sample(setup, "test", tmp_path)  # predicted, not read
    assert at_test.target.inputs == [BOS] and at_test.target.loss_mask == [False]


def _model(vocab, grid: int = 8) -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                      decoder_layers=2, heads=2, dropout=0.0, outputs=("codes",),
                                      code_ids=(vocab.code_ids[0], len(vocab.code_ids)), code_grid=grid)).eval()


def test_the_code_head_scores_codes_and_steps_match_teacher_forcing(setup, tmp_path):
    """Teacher forcing gives logits over the codes alone; one position at a time over the KV
    cache gives the same scores over the vocabulary, -inf outside the codes."""
    task, vocab, resources, images = setup
    model = _model(vocab)
    batch = collate([_sample(setup, "valid", tmp_path)])
    with torch.no_grad():
        forced = model(batch)  # [1, 64, K]
        assert forced.shape == (1, 64, len(vocab.code_ids))
        memory, mask = model.encode(batch)
        cross = model.cross_cache(memory)
        tokens, past = batch.decoder.inputs, None
        first = vocab.code_ids[0]
        for t in range(5):
            logits, past = model.decode_step(tokens[:, t:t + 1], t, past, cross, mask, last=True, head="codes")
            assert torch.isinf(logits[:, :first]).all() and torch.isinf(logits[:, first + len(vocab.code_ids):]).all()
            assert torch.allclose(logits[:, first:first + len(vocab.code_ids)], forced[:, t], atol=1e-4)


def test_the_code_head_places_each_position_on_the_grid(setup):
    _, vocab, _, _ = setup
    head = _model(vocab, grid=4).heads["codes"]
    with torch.no_grad():
        head.row.weight.zero_()
        head.col.weight.zero_()
        head.row.weight[2] = 1.0  # row 2 holds positions 8..11
        head.col.weight[3] = 10.0  # column 3: positions 3, 7, 11, 15
        head.embed.weight.zero_()
        x = head.inputs(torch.zeros(1, 17, dtype=torch.long))[0, :, 0]
    assert x.tolist() == [0, 0, 0, 10, 0, 0, 0, 10, 1, 1, 1, 11, 0, 0, 0, 10, 0]  # 16: past the grid


def test_generation_writes_exactly_the_grid_in_codes(setup, tmp_path):
    task, vocab, resources, _ = setup
    model = _model(vocab)
    batch = collate([_sample(setup, "test", tmp_path)] * 2)
    scorer = Scorer(task, vocab, resources=resources)
    assert scorer.generation.min_len == scorer.generation.max_len == 64
    for cfg in (scorer.generation.with_(seed=1), GenerateConfig(beam=2, min_len=64, max_len=64,
                                                                vocabulary=tuple(vocab.code_ids))):
        for hyps in generate(model, batch, cfg):
            for h in hyps:
                assert len(h.tokens) == 64 and set(h.tokens) <= set(vocab.code_ids)
                image = scorer.output(h.tokens, {})
                assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_the_image_postprocessor_decodes_with_the_tokenizer(setup):
    task, vocab, resources, images = setup
    codes = resources["image"].encode(images[:1])[0]
    image = Scorer(task, vocab, resources=resources).output([vocab.code_ids[c] for c in codes], {})
    assert np.array_equal(image, resources["image"].decode(codes[None])[0])
    with pytest.raises(Exception, match="image tokenizer"):
        Scorer(task, vocab)  # without the run's tokenizer it cannot decode


# ------------------------------------------------------------------------------ metrics, outputs

def test_psnr_and_ssim_against_hand_values():
    a = np.full((8, 8, 3), 100, dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # one value off by 10: MSE = (10/255)^2 / 192
    want = 10 * math.log10(1 / ((10 / 255) ** 2 / 192))
    assert psnr([b], [a]) == pytest.approx(want) and psnr([a], [a]) == pytest.approx(100.0)
    noise = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    assert ssim([noise], [noise]) == pytest.approx(1.0) and ssim([np.zeros_like(noise)], [noise]) < 0.1
    with pytest.raises(ValueError, match="no generated or reference image"):
        psnr([a, None], [a, a])


def test_an_output_image_is_pil_saves_as_png_and_travels_as_json(tmp_path):
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[4:10, 4:10] = (200, 0, 0)
    best = Output(score=-1.0, pixels=pixels)
    best.n_best = [best, Output(score=-2.0, pixels=pixels[::-1].copy())]
    assert best.image.size == (32, 32) and len(best.images) == 2
    path = best.save_image(tmp_path / "drawn")
    assert path.name == "drawn.png" and np.array_equal(np.asarray(__import__("PIL.Image").Image.open(path)), pixels)
    from PIL import Image

    url = best.to_dict()["image"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert np.array_equal(np.asarray(decoded), pixels)
    with pytest.raises(ValueError, match="no generated image"):
        Output(text="x").save_image(tmp_path / "none.png")


def test_ofac_data_shows_image_targets_before_and_after_the_tokenizer_is_trained(trained, tmp_path):
    """Before `ofac run` trains the tokenizer the image cells are still read (a missing file is
    a diagnostic) and shown as codes to come; with the run's tokenizer, as the codes themselves."""
    from PIL import Image

    from ofac import compiler
    from ofac.runtime.data.preview import preview

    tok, images = trained
    for k in range(2):
        Image.fromarray(images[k]).save(tmp_path / f"{k}.png")
    (tmp_path / "t.jsonl").write_text('{"text": "a red circle", "2": "0.png"}\n{"text": "a blue one", "2": "9.png"}\n')
    src = tmp_path / "t.ofa"
    src.write_text(f"task t2i {{\n    instruction: {T2I}\n    train = t.jsonl\n}}\ntrain {{\n    out = run\n}}\n")
    before = preview(compiler.load(src), tmp_path, rows=2)
    text = "\n".join(before.lines)
    assert "image tokenizer: not trained yet (32px -> 8x8 codes of 256" in text
    assert "<an image as 64 codes, once the image tokenizer is trained>" in text
    assert [(d.code, d.line) for d in before.diagnostics] == [("E0104", 2)]  # 9.png is missing
    assert "column `2`" in before.diagnostics[0].message
    tok.copy_to(tmp_path / "run" / "tokenizers" / "image")
    after = "\n".join(preview(compiler.load(src), tmp_path, rows=1).lines)
    first = " ".join(f"<code_{c}>" for c in tok.encode(images[:1])[0][:12])
    assert f"decoder target (with loss)     {first} ... (64 codes)" in after
