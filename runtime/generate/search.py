"""Generation: one batched loop with a key/value cache for beam search, greedy search (beam
search with one beam, exactly) and sampling (temperature, top-k, top-p).

Every step feeds one new position per row: the encoder runs once, each decoder layer's
cross-attention keys/values are computed once per source, and the self-attention cache grows
by one position per step (rows are reordered with their beams).  Forced prefix tokens (the
decoder's `no_loss` plain text) are fed, not generated: a row still inside its prefix may only
take its next prefix token, and it costs no score.  Constraints per row: `min_len` (no EOS
before), `max_len` (only EOS after), the closed-set trie, `no_repeat_ngram_size`.

The loop is written once against a small array interface (the methods of `NumpyArrays`) with
two backends: torch tensors (`generate.TorchArrays`, on any device: the PyTorch backend) and
numpy arrays (`NumpyArrays`: the torch-free ONNX Runtime backend).  This module imports no torch.

Shapes: B examples, K beams (or samples) per example, N = B*K rows, V vocabulary."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..vocab.tokenizer import BOS, EOS, PAD

NEG = float("-inf")


@dataclass(frozen=True)
class StepTraits:
    """What a model's `decode_step` takes beyond the plain protocol of the search (encode,
    cross_cache, decode_step(tokens, start, past, cross, mask, last), and `head=` for a batch of
    another output head than the token head).  A model declares them
    with `generation_traits(memory, capacity, rows)`; one without that method (the ONNX graphs) gets none.

    shared_cross: the K beam rows of a source may attend to its one copy of the cross-attention
        keys/values, or of the memory (else each row gets its own);
    optional_mask: the memory mask may be None where no source is padded;
    cross_from_memory: decode_step takes the encoder output itself as `cross`, one copy per
        source (cross_cache is not called);
    step_options: extra keyword arguments of every decode_step (the eager model's weight pack
        and cache capacity)."""
    shared_cross: bool = False
    optional_mask: bool = False
    cross_from_memory: bool = False
    step_options: dict = field(default_factory=dict)


class Trie:
    """Candidate answers as token sequences (each ending in EOS); `allowed` gives the tokens
    that continue some candidate after a generated prefix."""

    def __init__(self, sequences):
        self.root: dict = {}
        self.size = 0
        for seq in sequences:
            node = self.root
            for t in list(seq) + [EOS]:
                node = node.setdefault(t, {})
            self.size += 1

    def allowed(self, prefix) -> list[int]:
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node)


@dataclass(frozen=True)
class GenerateConfig:
    beam: int = 5
    max_len: int = 64  # generated tokens, EOS not counted
    min_len: int = 1
    len_penalty: float = 1.0  # final score = sum of log-probs / (length + 1) ** len_penalty
    no_repeat_ngram_size: int = 0
    sampling: bool = False  # `beam` independent samples per example instead of a search
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int | None = None  # of the sampling generator
    trie: Trie | None = field(default=None, compare=False)
    vocabulary: tuple[int, ...] | None = None  # the only tokens to generate (a box: its bin tokens), EOS aside

    @classmethod
    def from_attrs(cls, attrs: dict, trie: Trie | None = None, **overrides) -> "GenerateConfig":
        """From a `generate.*` op's attributes; `overrides` (None values ignored) win."""
        values = {k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs and k not in ("trie", "vocabulary")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("top_p") in (None, 0):
            values.pop("top_p", None)
        return cls(trie=trie, **values)

    def with_(self, **changes) -> "GenerateConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class Hypothesis:
    tokens: list[int]  # generated, without the forced prefix and EOS
    score: float  # sum of log-probabilities / (len + 1) ** len_penalty
    logprob: float  # sum of log-probabilities


class NumpyArrays:
    """The array operations the search needs, on numpy arrays (logits arrive as float32)."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def long(self, x):
        return np.asarray(x, dtype=np.int64)

    def arange(self, n: int):
        return np.arange(n)

    def zeros(self, shape, kind: str):
        return np.zeros(shape, dtype={"float": np.float32, "bool": np.bool_, "long": np.int64}[kind])

    def repeat(self, n: int, k: int):
        return np.repeat(np.arange(n), k)

    def additive(self, mask, dtype):
        """A boolean mask (True: attend) as 0 / -inf."""
        return np.where(mask, 0.0, NEG).astype(dtype)

    def log_softmax(self, x):
        x = np.asarray(x, dtype=np.float32)
        m = x.max(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            shifted = x - m
            return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    def softmax(self, x):
        return np.exp(self.log_softmax(x))

    def copy(self, x):
        return np.array(x, copy=True)

    def cat(self, a, b):
        return np.concatenate([a, b], axis=1)

    def isfinite(self, x):
        return np.isfinite(x)

    def where(self, cond, a, b):
        return np.where(cond, a, b).astype(b.dtype if hasattr(b, "dtype") else np.float32, copy=False)

    def any_rows(self, x):
        return x.any(axis=1)

    def row_max(self, x):
        idx = x.argmax(axis=1)
        return np.take_along_axis(x, idx[:, None], 1)[:, 0], idx

    def topk(self, x, k: int):
        """The k largest per row, largest first (equal values: lower index first)."""
        if k < x.shape[1]:
            part = np.argpartition(-x, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(x.shape[1]), x.shape)
        vals = np.take_along_axis(x, part, 1)
        order = np.lexsort((part, -vals), axis=1)
        idx = np.take_along_axis(part, order, 1)
        return np.take_along_axis(x, idx, 1), idx

    def sort_desc(self, x):
        idx = np.argsort(-x, axis=1, kind="stable")
        return np.take_along_axis(x, idx, 1), idx

    def argsort(self, x):
        return np.argsort(x, axis=1, kind="stable")

    def gather(self, x, idx):
        return np.take_along_axis(x, idx, 1)

    def scatter(self, x, idx, values):
        out = np.empty_like(x)
        np.put_along_axis(out, idx, values, 1)
        return out

    def cumsum(self, x):
        return np.cumsum(x, axis=1)

    def nonzero(self, mask) -> list:
        """Indices of True entries: ints for a vector, [i, j] lists for a matrix."""
        found = np.nonzero(mask)
        return found[0].tolist() if mask.ndim == 1 else np.stack(found, 1).tolist()

    def multinomial(self, probs):
        """One draw per row of `probs` (rows sum to 1, or are all 0: then token 0)."""
        u = self.rng.random((probs.shape[0], 1))
        cdf = np.cumsum(probs, axis=1, dtype=np.float64)
        return np.minimum((cdf < u * cdf[:, -1:]).sum(axis=1), probs.shape[1] - 1)


def search(model, batch, cfg: GenerateConfig, xp) -> list[list[Hypothesis]]:
    """Per example, its hypotheses best first (`cfg.beam` of them when that many end); `xp`
    the array backend the model's tensors live in."""
    return _Search(model, batch, cfg, xp).run()


class _Search:
    def __init__(self, model, batch, cfg: GenerateConfig, xp):
        self.model, self.cfg, self.xp = model, cfg, xp
        memory, mask = model.encode(batch)  # [B, S, D], [B, 1, 1, S] (True: a real position)
        self.B, self.K = memory.shape[0], max(1, cfg.beam)
        self.N = self.B * self.K
        rows = xp.repeat(self.B, self.K)  # row -> example
        # the forced prefix of each row: BOS then the example's no_loss decoder text
        plen = xp.long(batch.decoder.prefix)  # [B]
        self.limit = (int(plen.max()) if len(plen) else 0) + cfg.max_len + 1  # the most tokens a row holds
        has_traits = hasattr(model, "generation_traits")
        traits = model.generation_traits(memory, self.limit + 1, self.N) if has_traits else StepTraits()
        self.step_options = dict(traits.step_options)
        if getattr(batch, "head", "tokens") != "tokens":  # another output head drives the decoder (image codes)
            self.step_options["head"] = batch.head
        # the memory form always takes one copy per source (its K rows attend to it together)
        shared = self.K == 1 or traits.shared_cross or traits.cross_from_memory
        if traits.cross_from_memory:
            self.cross = memory
        else:
            cross = model.cross_cache(memory)
            self.cross = cross if shared else [(k[rows], v[rows]) for k, v in cross]  # one copy per beam
        # an additive mask (0 / -inf) is cheaper for the attention kernel than a boolean one, and
        # none at all where the model allows it and no source is padded
        if traits.optional_mask and bool(mask.all()):
            self.mask = None
        else:
            self.mask = xp.additive(mask if shared else mask[rows], memory.dtype)
        width = int(plen.max()) + 1 if len(plen) else 1
        forced = xp.copy(xp.long(batch.decoder.inputs[:, :width]))  # [B, width]
        forced[xp.arange(width)[None] > plen[:, None]] = PAD
        self.forced, self.plen = forced[rows], plen[rows]  # [N, width], [N]
        # every row advances one position per step, so how many tokens rows have generated lies
        # between L-1-plen_max and L-1-plen_min: most steps need no per-row length checks
        self.plen_min, self.plen_max = (int(plen.min()), int(plen.max())) if len(plen) else (0, 0)
        self.banned = None  # [V] True for tokens outside cfg.vocabulary
        if cfg.vocabulary is not None:
            self.banned = xp.zeros(model.vocab_size, "bool")
            self.banned[:] = True
            self.banned[list(cfg.vocabulary) + [EOS]] = False
        self.finished: list[list[Hypothesis]] = [[] for _ in range(self.B)]
        self.done = xp.zeros(self.B, "bool")
        self._ended = False  # a hypothesis ended since the last `finish`
        # can a beam be left without a finite continuation (then its example may be over)?
        self._may_die = self.K > 1 or cfg.trie is not None or self.banned is not None

    # ------------------------------------------------------------------ the loop

    def run(self) -> list[list[Hypothesis]]:
        cfg, xp, B, K, N = self.cfg, self.xp, self.B, self.K, self.N
        start = 1 + int(self.plen.min())  # positions every row is forced through: fed at once
        tokens = self.forced[:, :start]  # [N, t]
        scores = xp.zeros((B, K), "float")
        if not cfg.sampling:
            scores[:, 1:] = NEG  # the K beams start as one
        generated = xp.zeros(N, "long")  # tokens after the prefix
        past, inp, pos = None, tokens, 0
        while tokens.shape[1] <= self.limit:
            logits, past = self.model.decode_step(inp, pos, past, self.cross, self.mask, last=True,
                                                  **self.step_options)
            pos += inp.shape[1]
            lp = xp.log_softmax(logits)  # [N, V], float32
            prefix_left = tokens.shape[1] <= self.plen_max
            forced_now = tokens.shape[1] <= self.plen if prefix_left else None  # next token still prefix
            lp = self.constrain(lp, tokens, generated, forced_now, tokens.shape[1])
            if cfg.sampling:
                tok, gain, order = self.sample(lp, scores)
            else:
                tok, gain, order = self.search(lp, scores, generated, tokens)
            scores = gain
            if order is not None:  # beams moved: their histories and caches move with them
                tokens, generated = tokens[order], generated[order]
                forced_now = forced_now[order] if forced_now is not None else None
                past = [p.reorder(order) if hasattr(p, "reorder") else (p[0][order], p[1][order]) for p in past]
            tokens = xp.cat(tokens, tok[:, None])
            generated = generated + xp.long(~forced_now) if forced_now is not None else generated + 1
            self.finish(tokens, scores, generated)
            if bool(self.done.all()):
                break
            inp = tokens[:, -1:]
        return [sorted(h, key=lambda x: -x.score)[:K] for h in self.finished]

    def constrain(self, lp, tokens, generated, forced_now, length: int):
        cfg, xp = self.cfg, self.xp
        fewest, most = length - 1 - self.plen_max, length - 1 - self.plen_min  # generated so far
        lp[:, PAD] = NEG
        lp[:, BOS] = NEG
        if self.banned is not None:
            lp[:, self.banned] = NEG
        if cfg.sampling and cfg.temperature not in (0, 1):
            lp = xp.log_softmax(lp / cfg.temperature)
        if fewest < cfg.min_len:
            lp[generated < cfg.min_len, EOS] = NEG
        if most >= cfg.max_len:
            over = generated >= cfg.max_len
            lp[over] = NEG
            lp[over, EOS] = 0.0
        if cfg.trie is not None or cfg.no_repeat_ngram_size:
            self.python_constraints(lp, tokens, generated, forced_now)
        if length <= self.plen_max:  # prefix rows take their next prefix token, free of charge
            nxt = self.forced[forced_now, tokens.shape[1]]
            rows = xp.long(xp.nonzero(forced_now))
            lp[rows] = NEG
            lp[rows, nxt] = 0.0
        return lp

    def python_constraints(self, lp, tokens, generated, forced_now):
        """The closed-set trie and n-gram blocking, row by row (only when asked for)."""
        cfg, n = self.cfg, self.cfg.no_repeat_ngram_size
        hist = tokens.tolist()
        gen = generated.tolist()
        forced = forced_now.tolist() if forced_now is not None else None
        for r in range(self.N):
            if forced is not None and forced[r]:
                continue
            if cfg.trie is not None:
                allowed = cfg.trie.allowed(hist[r][len(hist[r]) - gen[r]:])
                keep = self.xp.copy(lp[r, allowed])
                lp[r] = NEG
                lp[r, allowed or [EOS]] = keep if allowed else 0.0
            if n and len(hist[r]) >= n:
                seq = hist[r]
                tail = tuple(seq[len(seq) - n + 1:])
                banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail]
                if banned:
                    lp[r, banned] = NEG

    def search(self, lp, scores, generated, tokens):
        """Beam step: the 2K best (beam, token) extensions per example; EOS extensions among
        the K best end hypotheses, the K best others go on.  One beam (greedy): the best token."""
        xp, B, K, V = self.xp, self.B, self.K, lp.shape[-1]
        if K == 1:
            best, tok = xp.row_max(lp)  # [B]
            vals = scores.reshape(-1) + best
            eos = tok == EOS
            if bool(eos.any()):
                for b in xp.nonzero(eos & xp.isfinite(vals) & ~self.done):
                    self.end(b, tokens[b], int(generated[b]), float(vals[b]))
                vals = xp.where(eos, NEG, vals)  # an ended row has no live beam
            return tok, vals.reshape(B, 1), None
        cand = (scores.reshape(B, K, 1) + lp.reshape(B, K, V)).reshape(B, K * V)
        vals, idx = xp.topk(cand, min(2 * K, K * V))  # [B, 2K]
        beam, tok = idx // V, idx % V
        eos = tok == EOS
        ranks = xp.arange(vals.shape[1])[None, :]
        ended = eos & (ranks < K) & xp.isfinite(vals) & ~self.done[:, None]
        for b, j in xp.nonzero(ended):
            row = b * K + int(beam[b, j])
            self.end(b, tokens[row], int(generated[row]), float(vals[b, j]))
        keep = xp.argsort(xp.long(eos) * vals.shape[1] + ranks)[:, :K]  # non-EOS first, by rank
        vals, beam, tok = xp.gather(vals, keep), xp.gather(beam, keep), xp.gather(tok, keep)
        vals = xp.where(xp.gather(eos, keep), NEG, vals)
        order = (xp.arange(B)[:, None] * K + beam).reshape(-1)
        return tok.reshape(-1), vals, order

    def sample(self, lp, scores):
        """Sampling step: each row draws its next token from the filtered distribution."""
        cfg, xp = self.cfg, self.xp
        if cfg.top_k and cfg.top_k < lp.shape[-1]:
            kth = xp.topk(lp, cfg.top_k)[0][:, -1:]
            lp = xp.where(lp < kth, NEG, lp)
        if cfg.top_p < 1.0:
            sorted_lp, order = xp.sort_desc(lp)
            p = xp.softmax(sorted_lp)
            drop = xp.cumsum(p) - p > cfg.top_p  # keep the smallest set reaching top_p
            lp = xp.scatter(lp, order, xp.where(drop, NEG, sorted_lp))
        probs = xp.softmax(lp)
        probs = xp.where(probs != probs, 0.0, probs)  # NaN (a row with no finite choice) -> 0
        tok = xp.multinomial(probs)
        gain = scores.reshape(-1) + xp.gather(lp, tok[:, None])[:, 0]
        return tok, gain.reshape(self.B, self.K), None  # samples never change rows

    def finish(self, tokens, scores, generated):
        """Sampling: a row that drew EOS ends its hypothesis.  Both modes: an example is done
        when K hypotheses ended or no live beam is left."""
        xp, K = self.xp, self.K
        if self.cfg.sampling:
            last = tokens[:, -1]
            alive = xp.isfinite(scores.reshape(-1))
            for r in xp.nonzero((last == EOS) & alive):
                b = r // K
                self.end(b, tokens[r, :-1], int(generated[r]) - 1, float(scores[b, r % K]))
                scores[b, r % K] = NEG  # this row is spent
        if self._ended:
            counts = xp.long([len(h) for h in self.finished])
            self.done |= counts >= K
            self._ended = False
        if self._may_die or self.cfg.sampling:  # beams left without a finite score are over
            self.done |= ~xp.any_rows(xp.isfinite(scores))

    def end(self, b: int, row_tokens, n_generated: int, logprob: float) -> None:
        if bool(self.done[b]):
            return
        seq = row_tokens.tolist()
        out = seq[len(seq) - n_generated:] if n_generated > 0 else []
        score = logprob / (n_generated + 1) ** self.cfg.len_penalty
        self.finished[b].append(Hypothesis(out, score, logprob))
        self._ended = True
