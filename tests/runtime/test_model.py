"""The generalist model: mixed-modality batches, causality, padding, learning."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import lower
from media import write_audio, write_image, write_video

from ofac.runtime.data.collate import collate
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.heads.tokens import label_smoothed_ce
from ofac.runtime.model.network import EncoderDecoder


def small_cfg(vocab, **kw):
    base = dict(vocab_size=len(vocab), d_model=64, ffn_dim=128, encoder_layers=2, decoder_layers=2, heads=4,
                dropout=0.0, image_size=64, patch_size=16, video_frames=8,
                adaptors=("text", "image_patch", "image_resnet", "audio_fbank", "video_image_sequence"))
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def mixed(tmp_path, vocab):
    write_image(tmp_path / "a.png", size=(50, 40), box=(5, 5, 30, 30))
    write_audio(tmp_path / "a.wav", seconds=0.6, rate=16000)
    write_video(tmp_path / "v.mp4", frames=10)
    rng = np.random.default_rng(0)

    def run(instr, row):  # 64 px images and clips for the small test model
        return TaskRunner(lower(instr, image_size=64), vocab, "valid")(row, rng, tmp_path)

    return [run("[IMAGE:img] what does the image describe? -> [TEXT:cap]", {"img": "a.png", "cap": "a red box"}),
            run("[IMAGE:img,adaptor=image_resnet] where? -> [BOX:box]", {"img": "a.png", "box": [5, 5, 30, 30]}),
            run("[AUDIO:wav] what is said? -> [TEXT:t]", {"wav": "a.wav", "t": "yes"}),
            run("[VIDEO:v] what happens? -> [TEXT:cap]", {"v": "v.mp4", "cap": "a green square moves"}),
            run("summarize: [TEXT:s] -> [TEXT:t]", {"s": "the quick brown fox jumps over the lazy dog", "t": "fox"})]


def test_mixed_modalities_in_one_batch(mixed, vocab):
    torch.manual_seed(0)
    model = EncoderDecoder(small_cfg(vocab)).eval()
    batch = collate(mixed).to("cpu")
    logits = model(batch)
    assert logits.shape == (*batch.decoder.inputs.shape, len(vocab)) and torch.isfinite(logits).all()
    label_smoothed_ce(logits, batch.decoder, {"eps": 0.1}).total.backward()
    for name in ("text", "image_patch", "image_resnet", "audio_fbank", "video_image_sequence"):
        grads = [p.grad for p in model.adaptors[name].parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_each_example_is_independent_of_its_batch_mates(mixed, vocab):
    torch.manual_seed(0)
    model = EncoderDecoder(small_cfg(vocab)).eval()
    together = model(collate(mixed).to("cpu"))
    for i, s in enumerate(mixed):
        alone = model(collate([s]).to("cpu"))
        n = len(s.target.target)
        assert torch.allclose(alone[0, :n], together[i, :n], atol=1e-4), i


def test_decoder_is_causal(mixed, vocab):
    torch.manual_seed(0)
    model = EncoderDecoder(small_cfg(vocab)).eval()
    batch = collate(mixed[-1:]).to("cpu")
    base = model(batch)
    changed = batch.decoder.inputs.clone()
    changed[0, -1] = 7
    batch.decoder.inputs = changed
    after = model(batch)
    assert torch.allclose(base[0, :-1], after[0, :-1], atol=1e-5) and not torch.allclose(base[0, -1], after[0, -1])


def test_tiny_preset_has_about_ten_million_parameters():
    model = EncoderDecoder(ModelConfig(vocab_size=8000, adaptors=("text", "image_patch")))
    assert 9e6 < model.num_parameters() < 13e6


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(vocab_size=100, d_model=100, heads=3)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ModelConfig(vocab_size=100, image_size=100, patch_size=16)
    with pytest.raises(ValueError, match="power"):
        ModelConfig(vocab_size=100, image_size=96, patch_size=12, adaptors=("image_resnet",))
    with pytest.raises(ValueError, match="power"):  # the video's frames through the stem
        ModelConfig(vocab_size=100, image_size=96, patch_size=12, adaptors=("video_image_sequence",),
                    video_stem="resnet")


def test_a_tiny_task_is_learned_to_near_zero_loss(vocab):
    runner = TaskRunner(lower("reverse: [TEXT:s] -> [TEXT:t]"), vocab, "valid")
    pairs = [("red circle", "circle red"), ("blue square", "square blue"), ("green triangle", "triangle green"),
             ("yellow box", "box yellow")]
    rng = np.random.default_rng(0)
    batch = collate([runner({"s": s, "t": t}, rng) for s, t in pairs]).to("cpu")
    torch.manual_seed(0)
    model = EncoderDecoder(small_cfg(vocab, adaptors=("text",)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        terms = label_smoothed_ce(model(batch), batch.decoder, {"eps": 0.0})
        nll = terms.nll / batch.decoder.target_tokens
        first = first if first is not None else nll.item()
        opt.zero_grad()
        (terms.total / batch.decoder.target_tokens).backward()
        opt.step()
    assert first > 3.0 and nll.item() < 0.05
    model.eval()
    pred, t = model(batch).argmax(-1), batch.decoder
    assert torch.equal(pred[t.loss_mask], t.target[t.loss_mask])  # teacher-forced, every token right


def test_decoder_only_examples(vocab):
    torch.manual_seed(0)
    model = EncoderDecoder(small_cfg(vocab, adaptors=("text",))).eval()
    rng = np.random.default_rng(0)
    lm = TaskRunner(lower("-> [TEXT:t]"), vocab, "valid")({"t": "the quick fox"}, rng)
    other = TaskRunner(lower("summarize: [TEXT:s] -> [TEXT:t]"), vocab, "valid")({"s": "a b", "t": "x"}, rng)
    assert lm.encoder == []
    together = model(collate([lm, other]).to("cpu"))
    n = len(lm.target.target)
    alone = model(collate([lm]).to("cpu"))
    torch.testing.assert_close(alone[0, :n], together[0, :n], atol=1e-5, rtol=1e-4)  # as if alone
    with torch.no_grad():  # what it attends to is the model's `empty` vector, and only it does
        model.empty.add_(torch.randn_like(model.empty))
    moved = model(collate([lm, other]).to("cpu"))
    m = len(other.target.target)
    assert not torch.allclose(moved[0, :n], together[0, :n], atol=1e-3)
    torch.testing.assert_close(moved[1, :m], together[1, :m])


def test_image_positions_and_box_bins_start_as_coordinates():
    """Patch positions start as 2-D sin-cos coordinates and box-bin embeddings in order, so
    nearby places and nearby bins start alike (what grounding and detection learn from)."""
    import torch.nn.functional as F

    from ofac.runtime.model.config import ModelConfig
    from ofac.runtime.model.network import EncoderDecoder

    cfg = ModelConfig(vocab_size=200, d_model=64, ffn_dim=128, encoder_layers=1, decoder_layers=1, heads=2,
                      image_size=64, patch_size=8, adaptors=("image_patch", "text"), bin_ids=(20, 64))
    model = EncoderDecoder(cfg)
    pos = model.adaptors["image_patch"].pos  # [64, d], 8x8 grid row-major
    near, far = F.cosine_similarity(pos[0], pos[1], 0), F.cosine_similarity(pos[0], pos[63], 0)
    assert near > 0.8 and far < near - 0.3
    bins = model.embed.weight.detach()[20:84]
    assert F.cosine_similarity(bins[10], bins[11], 0) > F.cosine_similarity(bins[10], bins[40], 0) + 0.3
    assert abs(float(bins.norm(dim=1).mean()) - float(model.embed.weight.detach()[100:].norm(dim=1).mean())) < 0.3
    assert ModelConfig.from_dict({**cfg.to_dict(), "adaptors": ["text"], "bin_ids": [20, 64]}).bin_ids == (20, 64)


@pytest.mark.parametrize("patch", [8, 16])
def test_the_resnet_stem_yields_the_patch_grid_and_ignores_batch_mates(patch):
    """`image_resnet` halves down to patch_size, so it gives the patch embedding's grid; in
    training mode too, an image's features do not depend on the other images of its batch (a
    micro-batch holds one task's images: batch statistics would leak between tasks)."""
    from ofac.runtime.model.adaptors import ResNetAdaptor

    cfg = ModelConfig(vocab_size=100, d_model=64, heads=4, image_size=64, patch_size=patch,
                      adaptors=("image_resnet",))
    stem = ResNetAdaptor(cfg).train()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 64, 64, generator=g)
    out, lengths = stem(images)
    assert out.shape == (3, (64 // patch) ** 2, 64) and lengths.tolist() == [(64 // patch) ** 2] * 3
    digits_like = torch.zeros(2, 3, 64, 64)  # a very different batch mate
    alone = stem(torch.cat([images[:1], digits_like]))[0][0]
    assert torch.allclose(alone, out[0], atol=1e-5)


def test_the_first_losses_of_a_fixed_run_are_pinned(vocab):
    """A loss-regression pin (as torchtune keeps): the first three losses of a fixed model, batch
    and optimizer.  A change to initialization, the forward pass or the loss moves them; update
    the pins only for an intended change, and say so in its commit."""
    runner = TaskRunner(lower("reverse: [TEXT:s] -> [TEXT:t]"), vocab, "valid")
    rows = [("red circle", "circle red"), ("blue square", "square blue")]
    batch = collate([runner({"s": s, "t": t}, np.random.default_rng(0)) for s, t in rows]).to("cpu")
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=1, heads=2, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        terms = label_smoothed_ce(model(batch), batch.decoder, {"eps": 0.1})
        loss = terms.total / batch.decoder.target_tokens
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses == pytest.approx([7.32858, 5.79012, 4.79605], rel=1e-4)


def test_video_frames_through_the_resnet_stem():
    """`model { video_stem = resnet }`: each frame is embedded by image_resnet's stem, on the same
    grid as the patch embedding, plus the frame embedding; frames stay apart."""
    from ofac.runtime.model.adaptors import PatchAdaptor, ResNetAdaptor, VideoAdaptor

    kw = dict(vocab_size=100, d_model=32, heads=4, image_size=32, patch_size=8, video_frames=4,
              adaptors=("video_image_sequence",))
    stem, patches = VideoAdaptor(ModelConfig(video_stem="resnet", **kw)), VideoAdaptor(ModelConfig(**kw))
    assert isinstance(stem.patches, ResNetAdaptor) and isinstance(patches.patches, PatchAdaptor)
    clips = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out, lengths = stem(clips)
    assert out.shape == patches(clips)[0].shape == (2, 4 * 16, 32) and lengths.tolist() == [64, 64]
    changed = clips.clone()
    changed[:, 3] = 0  # the last frame alone
    assert torch.allclose(stem(changed)[0][:, :48], out[:, :48], atol=1e-5)
    assert not torch.allclose(stem(changed)[0][:, 48:], out[:, 48:])
