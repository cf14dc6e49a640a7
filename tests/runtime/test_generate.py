"""The generation loop: the key/value cache, beam search, greedy, sampling, constraints."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import lower

from ofac.runtime.data.collate import collate
from ofac.runtime.data.targets import TokenBatch
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.generate.eager import GenerateConfig, Trie, generate, greedy
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.vocab.tokenizer import BOS, EOS, PAD


def small_model(vocab, seed=0):
    torch.manual_seed(seed)
    return EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=2, heads=2, dropout=0.0)).eval()


def batch_of(vocab, instruction, rows):
    runner = TaskRunner(lower(instruction), vocab, "test")
    rng = np.random.default_rng(0)
    return collate([runner(r, rng) for r in rows])


SOURCES = [{"s": "the quick brown fox"}, {"s": "a red circle"}, {"s": "what is said"}]


def test_the_cache_gives_the_logits_of_the_full_decoder(vocab):
    model = small_model(vocab)
    batch = batch_of(vocab, "[TEXT:s] -> [TEXT:t]", SOURCES)
    memory, mask = model.encode(batch)
    tokens = torch.randint(4, len(vocab), (3, 7))
    tokens[:, 0] = BOS
    full = model.decode("tokens", tokens, memory, mask)
    cross = model.cross_cache(memory)
    logits, past = model.decode_step(tokens[:, :3], 0, None, cross, mask)  # a prefix at once, then steps
    steps = [logits]
    for t in range(3, 7):
        logits, past = model.decode_step(tokens[:, t:t + 1], t, past, cross, mask)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_attending_to_the_memory_gives_the_keys_values_logits():
    """Eager generation of big batches attends to the encoder output itself (the key/value
    projections moved to the query and the result): the logits of the keys/values form, for
    padded sources and K consecutive rows per source."""
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=300, d_model=64, ffn_dim=128, encoder_layers=1,
                                        decoder_layers=2, heads=4, dropout=0.0)).eval()
    B, K, S = 3, 2, 7
    memory = torch.randn(B, S, 64)
    mask = torch.zeros(B, 1, 1, S)
    mask[0, ..., 5:] = float("-inf")  # a padded source
    rows = torch.arange(B).repeat_interleave(K)
    tokens = torch.randint(4, 300, (B * K, 3))
    with torch.no_grad():
        keys_values = [(k[rows], v[rows]) for k, v in model.cross_cache(memory)]
        want, _ = model.decode_step(tokens, 0, None, keys_values, mask[rows])
        got, _ = model.decode_step(tokens, 0, None, memory, mask, pack=model.pack_decoder())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_prepacked_weights_give_the_plain_logits(monkeypatch):
    """On the CPU the pack may hold weights in oneDNN's layout (GELU fused into the FFN's first
    matmul): step by step through the KV caches, the logits of the unpacked model."""
    from ofac.runtime.model.layout import Prepacked, _can_prepack

    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=600, d_model=256, ffn_dim=1024, encoder_layers=1,
                                        decoder_layers=2, heads=4, dropout=0.0)).eval()
    if not _can_prepack(model.embed.weight):
        pytest.skip("no oneDNN in this torch build")
    monkeypatch.setenv("OFAC_PREPACK", "always")  # whatever this machine measures
    pack = model.pack_decoder()
    block = model.decoder[0]
    assert isinstance(pack["proj"], Prepacked) and isinstance(pack[block.ffn[0]], Prepacked)
    memory, mask = torch.randn(2, 5, 256), torch.zeros(2, 1, 1, 5)
    tokens = torch.randint(4, 600, (2, 6))
    with torch.no_grad():
        want = model.decode("tokens", tokens, memory, mask)
        steps, past = [], None
        for t in range(6):
            logits, past = model.decode_step(tokens[:, t:t + 1], t, past, memory, mask, pack=pack, capacity=8)
            steps.append(logits)
        # under autocast the prepacked layers step aside for F.linear, which autocast lowers to bf16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = model.decode_step(tokens[:, :1], 0, None, memory, mask, pack=pack, capacity=8)
    torch.testing.assert_close(torch.cat(steps, 1), want, atol=1e-4, rtol=1e-4)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), want[:, :1], atol=0.1, rtol=0.05)
    import copy
    import io

    copy.deepcopy(model)  # the pack (oneDNN's opaque tensors) lives beside the model, not in it
    torch.save(model, io.BytesIO())


def test_the_pack_takes_the_layout_measured_faster_for_its_rows(monkeypatch, tmp_path):
    """Which layout multiplies faster depends on the CPU, the shape and the rows: the pack
    takes the one measured faster, prepacked only when at least 10% so; each shape and row
    count (a power of two) is measured once per machine, later processes read the cache file;
    OFAC_PREPACK=never|always skips the measuring."""
    from ofac.runtime.model import layout as model_module
    from ofac.runtime.model.layout import Prepacked, _can_prepack

    m = EncoderDecoder(ModelConfig(vocab_size=600, d_model=64, ffn_dim=256, encoder_layers=1,
                                    decoder_layers=1, heads=4, dropout=0.0)).eval()
    if not _can_prepack(m.embed.weight):
        pytest.skip("no oneDNN in this torch build")
    measured = []

    def seconds(weight, rows):  # (prepacked, plain): the FFN's first matmul prepacked pays at 4+ rows
        measured.append((tuple(weight.shape), rows))
        if tuple(weight.shape) == (256, 64):
            return (1.0, 2.0) if rows >= 4 else (2.0, 1.0)
        return 0.95, 1.0  # within 10%: plain
    monkeypatch.setattr(model_module, "_layout_seconds", seconds)
    monkeypatch.setattr(model_module, "_PREPACK_FASTER", None)  # the cache file not read yet
    monkeypatch.setenv("OFAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OFAC_PREPACK", raising=False)
    fc1 = m.decoder[0].ffn[0]
    one = m.pack_decoder(rows=1)
    assert not any(isinstance(w, Prepacked) for w in one.values())
    assert m.pack_decoder(rows=1) is one  # kept: nothing measured again
    five = m.pack_decoder(rows=5)  # measured at 8 rows
    assert isinstance(five[fc1], Prepacked) and not isinstance(five["proj"], Prepacked)
    assert ((256, 64), 8) in measured and len(measured) == len(set(measured))
    m.pack_decoder(rows=7)
    assert len(measured) == len(set(measured))  # 7 rows: the 8-row measurements
    # another process on this machine: reads the file, measures nothing, takes the same layouts
    assert model_module.layout_cache_path() == tmp_path / "cache" / "layouts.json"
    monkeypatch.setattr(model_module, "_PREPACK_FASTER", None)  # the cache file not read yet
    monkeypatch.setattr(model_module, "_layout_seconds", lambda weight, rows: pytest.fail("measured again"))
    again = m.pack_decoder(rows=5)  # the layouts are looked up before the kept pack is
    assert isinstance(again[fc1], Prepacked) and not isinstance(again["proj"], Prepacked)
    # a process that raced another to measure takes the layout the other wrote first
    path = model_module.layout_cache_path()
    key, _ = model_module._layout_key(m.embed.weight, 32)
    path.write_text(json.dumps({**json.loads(path.read_text()), key: True}))
    monkeypatch.setattr(model_module, "_layout_seconds", lambda weight, rows: (2.0, 1.0))
    assert isinstance(m.pack_decoder(rows=32)["proj"], Prepacked)
    monkeypatch.setenv("OFAC_PREPACK", "never")
    assert not isinstance(m.pack_decoder(rows=5)[fc1], Prepacked)
    monkeypatch.setenv("OFAC_PREPACK", "always")
    assert isinstance(m.pack_decoder(rows=1)["proj"], Prepacked)
    torch.testing.assert_close(torch.ops.mkldnn._linear_pointwise(torch.ones(3, 64), five[fc1].weight, fc1.bias,
                                                                  "none", [], ""), fc1(torch.ones(3, 64)))


def test_the_memory_form_is_taken_where_it_reads_less():
    model = EncoderDecoder(ModelConfig(vocab_size=300, dropout=0.0, d_model=256, ffn_dim=1024, encoder_layers=1,
                                        decoder_layers=4, heads=4)).eval()
    assert model.generation_traits(torch.zeros(16, 64, 256), 33).cross_from_memory  # 16 sources of 64
    assert not model.generation_traits(torch.zeros(1, 64, 256), 33).cross_from_memory  # one short source


def reference_greedy(model, batch, max_len):
    """Greedy decoding without a cache: the whole decoder recomputed every step."""
    memory, mask = model.encode(batch)
    out = []
    for i in range(len(batch)):
        seq = [BOS] + batch.decoder.inputs[i, 1:1 + int(batch.decoder.prefix[i])].tolist()
        gen = []
        for _ in range(max_len + 1):
            logits = model.decode("tokens", torch.tensor([seq]), memory[i:i + 1], mask[i:i + 1])[0, -1]
            logits[[PAD, BOS]] = -math.inf
            if not gen:
                logits[EOS] = -math.inf  # min_len 1
            if len(gen) == max_len:
                break
            t = int(logits.argmax())
            if t == EOS:
                break
            gen.append(t)
            seq.append(t)
        out.append(gen)
    return out


@pytest.mark.parametrize("instruction", ["[TEXT:s] -> [TEXT:t]", "[TEXT:s] -> answer: [TEXT:t]",
                                         "[TEXT:s] -> [TEXT:p,no_loss] then [TEXT:t]"])
def test_beam_one_is_greedy(vocab, instruction):
    model = small_model(vocab, seed=1)
    rows = [{**r, "p": "a longer forced prefix" if i == 1 else "x"} for i, r in enumerate(SOURCES)]
    batch = batch_of(vocab, instruction, rows)
    expected = reference_greedy(model, batch, 12)
    assert greedy(model, batch, max_len=12) == expected
    one = generate(model, batch, GenerateConfig(beam=1, max_len=12))
    assert [h[0].tokens for h in one] == expected


class KnownLogits(torch.nn.Module):
    """A 'model' whose next-token log-probabilities depend only on the previous token, from a
    table: beam search over it has a known answer."""

    def __init__(self, table: dict[int, dict[int, float]], vocab_size: int):
        super().__init__()
        self.table, self.V = table, vocab_size

    def encode(self, batch):
        return torch.zeros(len(batch), 1, 4), torch.ones(len(batch), 1, 1, 1, dtype=torch.bool)

    def cross_cache(self, memory):
        return [(memory[:, None], memory[:, None])]

    def decode_step(self, tokens, start, past, cross, mask, last=False):
        logits = torch.full((tokens.shape[0], tokens.shape[1], self.V), -1e9)
        for r in range(tokens.shape[0]):
            for t, prev in enumerate(tokens[r].tolist()):
                for nxt, p in self.table.get(prev, {EOS: 1.0}).items():
                    logits[r, t, nxt] = math.log(p)
        return logits[:, -1] if last else logits, [(torch.zeros(tokens.shape[0], 1, 1, 1),) * 2]


class OneSource:
    """A batch of one source with an empty forced prefix."""

    def __len__(self):
        return 1
    decoder = TokenBatch(torch.tensor([[BOS]]), None, None, torch.tensor([0]))


def test_beam_search_finds_the_best_sequence_greedy_misses():
    A, B, C, D = 10, 11, 12, 13
    # greedy takes A (0.6) then faces a near-flat split; B (0.4) leads to C with 0.95
    table = {BOS: {A: 0.6, B: 0.4}, A: {C: 0.34, D: 0.33, EOS: 0.33}, B: {C: 0.95, EOS: 0.05},
             C: {EOS: 1.0}, D: {EOS: 1.0}}
    model = KnownLogits(table, 20)
    assert greedy(model, OneSource(), max_len=5) == [[A, C]]  # 0.6 * 0.34
    hyps = generate(model, OneSource(), GenerateConfig(beam=3, max_len=5, len_penalty=0.0))[0]
    assert hyps[0].tokens == [B, C]
    assert hyps[0].logprob == pytest.approx(math.log(0.4 * 0.95), abs=1e-5)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert {tuple(h.tokens) for h in hyps} <= {(B, C), (A, C), (A, D), (A,), (B,)}


def test_length_penalty_and_min_max_length():
    A = 10
    table = {BOS: {A: 0.5, EOS: 0.5}, A: {A: 0.9, EOS: 0.1}}
    model = KnownLogits(table, 20)
    assert generate(model, OneSource(), GenerateConfig(beam=2, max_len=6, min_len=0))[0][0].tokens == []
    assert generate(model, OneSource(), GenerateConfig(beam=2, max_len=6, min_len=3, len_penalty=0.0))[0][0].tokens \
        == [A] * 3
    # normalized by length, the longer of the two ended hypotheses wins
    hyps = generate(model, OneSource(), GenerateConfig(beam=2, max_len=6, min_len=3, len_penalty=1.0))[0]
    assert [h.tokens for h in hyps] == [[A] * 4, [A] * 3]
    longest = generate(model, OneSource(), GenerateConfig(beam=1, max_len=4, min_len=4))[0][0]
    assert longest.tokens == [A] * 4  # EOS is forced at max_len


def test_no_repeat_ngram_blocks_repeats():
    A, B = 10, 11
    table = {BOS: {A: 0.9, B: 0.1}, A: {A: 0.9, B: 0.1}, B: {A: 0.9, B: 0.1}}
    model = KnownLogits(table, 20)
    out = generate(model, OneSource(), GenerateConfig(beam=1, max_len=6, no_repeat_ngram_size=2))[0][0].tokens
    grams = [tuple(out[i:i + 2]) for i in range(len(out) - 1)]
    assert out[:4] == [A, A, B, A]  # A A is used, A B is used: then both continuations of A are blocked
    assert len(grams) == len(set(grams))


def test_closed_set_never_leaves_the_set(vocab):
    answers = [vocab.encode(a) for a in ("yes", "no", "the quick brown fox", "a red circle above a blue square")]
    for seed in range(4):
        model = small_model(vocab, seed=seed)
        batch = batch_of(vocab, "[TEXT:s] -> [TEXT:t,closed_set]", SOURCES)
        for beam in (1, 3, 5):
            for hyps in generate(model, batch, GenerateConfig(beam=beam, max_len=10, trie=Trie(answers))):
                assert hyps and all(h.tokens in answers for h in hyps)
                assert len(hyps) == min(beam, len(answers))


# ---------------------------------------------------------------------------- the numpy backend, and both

class AsNumpy:
    """A torch model seen through numpy arrays, as the torch-free ONNX runtime sees its graphs."""

    def __init__(self, model):
        self.m = model
        self.vocab_size = getattr(model, "vocab_size", None)

    def encode(self, batch):
        memory, mask = self.m.encode(batch)
        return memory.numpy(), mask.numpy()

    def cross_cache(self, memory):
        return [(k.numpy(), v.numpy()) for k, v in self.m.cross_cache(torch.from_numpy(memory))]

    def decode_step(self, tokens, start, past, cross, mask, last=True):
        t = torch.from_numpy
        past = None if past is None else [(t(k), t(v)) for k, v in past]
        logits, present = self.m.decode_step(t(tokens), start, past, [(t(k), t(v)) for k, v in cross], t(mask),
                                             last=last)
        return logits.numpy(), [(k.numpy(), v.numpy()) for k, v in present]


def numpy_generate(model, batch, cfg):
    from ofac.runtime.generate.search import NumpyArrays, search

    with torch.no_grad():
        return search(AsNumpy(model), batch, cfg, NumpyArrays(cfg.seed))


@pytest.mark.parametrize("run", [generate, numpy_generate], ids=["torch", "numpy"])
def test_sampling_is_seeded_and_top_k_1_is_greedy(vocab, run):
    model = small_model(vocab, seed=2)
    batch = batch_of(vocab, "[TEXT:s] -> [TEXT:t]", SOURCES)
    one = run(model, batch, GenerateConfig(beam=1, sampling=True, top_k=1, max_len=8, seed=0))
    assert [h[0].tokens for h in one] == greedy(model, batch, max_len=8)
    cfg = GenerateConfig(beam=4, sampling=True, temperature=1.5, top_p=0.9, max_len=8, seed=7)
    a, b = run(model, batch, cfg), run(model, batch, cfg)
    assert [[h.tokens for h in x] for x in a] == [[h.tokens for h in x] for x in b]
    assert all(len(x) == 4 for x in a)
    assert len({tuple(h.tokens) for x in a for h in x}) > 3  # samples differ


@pytest.mark.parametrize("cross", ["keys_values", "memory"])
@pytest.mark.parametrize("instruction", ["[TEXT:s] -> [TEXT:t]", "[TEXT:s] -> [TEXT:p,no_loss] then [TEXT:t]"])
def test_the_numpy_search_answers_what_the_torch_search_does(vocab, instruction, cross, monkeypatch):
    # the numpy side runs the exported graphs' form (keys/values per row); the torch side each
    # of the eager model's cross-attention forms, whatever the batch size would pick
    traits = EncoderDecoder.generation_traits
    monkeypatch.setattr(EncoderDecoder, "generation_traits", lambda self, memory, capacity, rows=None: replace(
        traits(self, memory, capacity, rows), cross_from_memory=cross == "memory"))
    answers = [vocab.encode(a) for a in ("yes", "no", "the quick brown fox", "a red circle above a blue square")]
    rows = [{**r, "p": "a longer forced prefix" if i == 1 else "x"} for i, r in enumerate(SOURCES)]
    for seed in range(3):
        model = small_model(vocab, seed=seed)
        batch = batch_of(vocab, instruction, rows)
        for cfg in (GenerateConfig(beam=1, max_len=10), GenerateConfig(beam=4, max_len=10, len_penalty=0.5),
                    GenerateConfig(beam=3, max_len=10, trie=Trie(answers)),
                    GenerateConfig(beam=2, max_len=12, min_len=3, no_repeat_ngram_size=2),
                    GenerateConfig(beam=2, max_len=8, vocabulary=tuple(range(20, 40)))):
            a, b = generate(model, batch, cfg), numpy_generate(model, batch, cfg)
            assert [[h.tokens for h in x] for x in b] == [[h.tokens for h in x] for x in a], cfg
            assert np.allclose([h.score for x in b for h in x], [h.score for x in a for h in x], atol=1e-5)


def test_numpy_beam_search_on_known_logits():
    A, B, C, D = 10, 11, 12, 13
    table = {BOS: {A: 0.6, B: 0.4}, A: {C: 0.34, D: 0.33, EOS: 0.33}, B: {C: 0.95, EOS: 0.05},
             C: {EOS: 1.0}, D: {EOS: 1.0}}
    hyps = numpy_generate(KnownLogits(table, 20), OneSource(), GenerateConfig(beam=3, max_len=5, len_penalty=0.0))[0]
    assert hyps[0].tokens == [B, C]
    assert hyps[0].logprob == pytest.approx(math.log(0.4 * 0.95), abs=1e-5)
