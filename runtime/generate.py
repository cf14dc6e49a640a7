"""Generation: one batched loop with a key/value cache for beam search, greedy search (beam
search with one beam, exactly) and sampling (temperature, top-k, top-p).

Every step feeds one new position per row: the encoder runs once, each decoder layer's
cross-attention keys/values are computed once per source, and the self-attention cache grows
by one position per step (rows are reordered with their beams).  Forced prefix tokens (the
decoder's `no_loss` plain text) are fed, not generated: a row still inside its prefix may only
take its next prefix token, and it costs no score.  Constraints per row: `min_len` (no EOS
before), `max_len` (only EOS after), the closed-set trie, `no_repeat_ngram_size`.

Shapes: B examples, K beams (or samples) per example, N = B*K rows, V vocabulary."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .tokenizer import BOS, EOS, PAD


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
    def from_op(cls, op, trie: Trie | None = None, **overrides) -> "GenerateConfig":
        """From an IR `generate.*` op; `overrides` (None values ignored) win."""
        names = cls.__dataclass_fields__
        values = {k: v for k, v in op.attrs if k in names and k not in ("trie", "vocabulary")}
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


@torch.no_grad()
def generate(model, batch, cfg: GenerateConfig = GenerateConfig()) -> list[list[Hypothesis]]:
    """Per example, its hypotheses best first (`cfg.beam` of them when that many end)."""
    was_training = model.training
    model.eval()
    try:
        return _Search(model, batch, cfg).run()
    finally:
        model.train(was_training)


def greedy(model, batch, max_len: int = 64, min_len: int = 1, trie: Trie | None = None) -> list[list[int]]:
    """The single best continuation per example (beam search with one beam)."""
    cfg = GenerateConfig(beam=1, max_len=max_len, min_len=min_len, trie=trie)
    return [hyps[0].tokens if hyps else [] for hyps in generate(model, batch, cfg)]


class _Search:
    def __init__(self, model, batch, cfg: GenerateConfig):
        self.model, self.cfg = model, cfg
        memory, mask = model.encode(batch)  # [B, S, D], [B, 1, 1, S]
        self.B, self.K = memory.shape[0], max(1, cfg.beam)
        self.N, dev = self.B * self.K, memory.device
        self.device = dev
        rows = torch.arange(self.B, device=dev).repeat_interleave(self.K)  # row -> example
        cross = model.cross_cache(memory)
        self.cross = cross if self.K == 1 else [(k[rows], v[rows]) for k, v in cross]  # one copy per beam
        # an additive mask (0 / -inf) is cheaper for the attention kernel than a boolean one
        self.mask = torch.zeros(mask[rows].shape, dtype=memory.dtype, device=dev).masked_fill_(~mask[rows],
                                                                                             float("-inf"))
        self.pack = model.pack_decoder() if hasattr(model, "pack_decoder") else None
        # the forced prefix of each row: BOS then the example's no_loss decoder text
        plen = batch.prefix.to(dev).long()  # [B]
        width = int(plen.max()) + 1 if len(plen) else 1
        forced = batch.decoder_input[:, :width].to(dev).clone()  # [B, width]
        forced[torch.arange(width, device=dev)[None] > plen[:, None]] = PAD
        self.forced, self.plen = forced[rows], plen[rows]  # [N, width], [N]
        # every row advances one position per step, so how many tokens rows have generated lies
        # between L-1-plen_max and L-1-plen_min: most steps need no per-row length checks
        self.plen_min, self.plen_max = (int(plen.min()), int(plen.max())) if len(plen) else (0, 0)
        self.generator = None
        if cfg.sampling and cfg.seed is not None:
            self.generator = torch.Generator(device=dev).manual_seed(cfg.seed)
        self.banned = None  # [V] True for tokens outside cfg.vocabulary
        if cfg.vocabulary is not None:
            V = model.vocab_size
            self.banned = torch.ones(V, dtype=torch.bool, device=dev)
            self.banned[list(cfg.vocabulary) + [EOS]] = False
        self.finished: list[list[Hypothesis]] = [[] for _ in range(self.B)]
        self.done = torch.zeros(self.B, dtype=torch.bool, device=dev)
        self._ended = False  # a hypothesis ended since the last `finish`
        # can a beam be left without a finite continuation (then its example may be over)?
        self._may_die = self.K > 1 or cfg.trie is not None or self.banned is not None

    # ------------------------------------------------------------------ the loop

    def run(self) -> list[list[Hypothesis]]:
        cfg, B, K, N = self.cfg, self.B, self.K, self.N
        start = 1 + int(self.plen.min())  # positions every row is forced through: fed at once
        tokens = self.forced[:, :start]  # [N, t]
        scores = torch.zeros(B, K, device=self.device)
        if not cfg.sampling:
            scores[:, 1:] = float("-inf")  # the K beams start as one
        generated = torch.zeros(N, dtype=torch.long, device=self.device)  # tokens after the prefix
        past, inp, pos = None, tokens, 0
        limit = int(self.plen.max()) + cfg.max_len + 1
        while tokens.shape[1] <= limit:
            if self.pack is not None:
                logits, past = self.model.decode_step(inp, pos, past, self.cross, self.mask, last=True,
                                                      pack=self.pack)
            else:
                logits, past = self.model.decode_step(inp, pos, past, self.cross, self.mask, last=True)
            pos += inp.shape[1]
            lp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # [N, V]
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
                past = [(k[order], v[order]) for k, v in past]
            tokens = torch.cat([tokens, tok[:, None]], 1)
            generated = generated + (~forced_now).long() if forced_now is not None else generated + 1
            self.finish(tokens, scores, generated)
            if bool(self.done.all()):
                break
            inp = tokens[:, -1:]
        return [sorted(h, key=lambda x: -x.score)[:K] for h in self.finished]

    def constrain(self, lp, tokens, generated, forced_now, length: int):
        cfg = self.cfg
        fewest, most = length - 1 - self.plen_max, length - 1 - self.plen_min  # generated so far
        lp[:, PAD] = float("-inf")
        lp[:, BOS] = float("-inf")
        if self.banned is not None:
            lp[:, self.banned] = float("-inf")
        if cfg.sampling and cfg.temperature not in (0, 1):
            lp = torch.log_softmax(lp / cfg.temperature, dim=-1)
        if fewest < cfg.min_len:
            lp[generated < cfg.min_len, EOS] = float("-inf")
        if most >= cfg.max_len:
            over = generated >= cfg.max_len
            lp[over] = float("-inf")
            lp[over, EOS] = 0.0
        if cfg.trie is not None or cfg.no_repeat_ngram_size:
            self.python_constraints(lp, tokens, generated, forced_now)
        if length <= self.plen_max:  # prefix rows take their next prefix token, free of charge
            nxt = self.forced[forced_now, tokens.shape[1]]
            rows = forced_now.nonzero().squeeze(1)
            lp[rows] = float("-inf")
            lp[rows, nxt] = 0.0
        return lp

    def python_constraints(self, lp, tokens, generated, forced_now):
        """The closed-set trie and n-gram blocking, row by row (only when asked for)."""
        cfg, n = self.cfg, self.cfg.no_repeat_ngram_size
        hist = tokens.tolist()
        gen = generated.tolist()
        for r in range(self.N):
            if forced_now is not None and bool(forced_now[r]):
                continue
            if cfg.trie is not None:
                allowed = cfg.trie.allowed(hist[r][len(hist[r]) - gen[r]:])
                keep = lp[r, allowed].clone()
                lp[r] = float("-inf")
                lp[r, allowed or [EOS]] = keep if allowed else 0.0
            if n and len(hist[r]) >= n:
                seq = hist[r]
                tail = tuple(seq[len(seq) - n + 1:])
                banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail]
                if banned:
                    lp[r, banned] = float("-inf")

    def search(self, lp, scores, generated, tokens):
        """Beam step: the 2K best (beam, token) extensions per example; EOS extensions among
        the K best end hypotheses, the K best others go on.  One beam (greedy): the best token."""
        B, K, V = self.B, self.K, lp.shape[-1]
        if K == 1:
            best, tok = lp.max(dim=1)  # [B]
            vals = scores.view(-1) + best
            eos = tok == EOS
            if bool(eos.any()):
                for b in (eos & torch.isfinite(vals) & ~self.done).nonzero().squeeze(1).tolist():
                    self.end(b, tokens[b], int(generated[b]), float(vals[b]))
                vals = vals.masked_fill(eos, float("-inf"))  # an ended row has no live beam
            return tok, vals.view(B, 1), None
        cand = (scores.view(B, K, 1) + lp.view(B, K, V)).view(B, K * V)
        vals, idx = cand.topk(min(2 * K, K * V), dim=1)  # [B, 2K]
        beam, tok = idx // V, idx % V
        eos = tok == EOS
        ranks = torch.arange(vals.shape[1], device=self.device).expand_as(vals)
        ended = eos & (ranks < K) & torch.isfinite(vals) & ~self.done[:, None]
        for b, j in ended.nonzero().tolist():
            row = b * K + int(beam[b, j])
            self.end(b, tokens[row], int(generated[row]), float(vals[b, j]))
        keep = (eos.long() * vals.shape[1] + ranks).argsort(dim=1)[:, :K]  # non-EOS first, by rank
        vals, beam, tok = vals.gather(1, keep), beam.gather(1, keep), tok.gather(1, keep)
        vals = torch.where(eos.gather(1, keep), torch.full_like(vals, float("-inf")), vals)
        order = None if K == 1 else (torch.arange(B, device=self.device)[:, None] * K + beam).view(-1)
        return tok.view(-1), vals, order

    def sample(self, lp, scores):
        """Sampling step: each row draws its next token from the filtered distribution."""
        cfg = self.cfg
        if cfg.top_k and cfg.top_k < lp.shape[-1]:
            kth = lp.topk(cfg.top_k, dim=-1).values[:, -1:]
            lp = lp.masked_fill(lp < kth, float("-inf"))
        if cfg.top_p < 1.0:
            sorted_lp, order = lp.sort(dim=-1, descending=True)
            mass = sorted_lp.softmax(-1).cumsum(-1)
            drop = mass - sorted_lp.softmax(-1) > cfg.top_p  # keep the smallest set reaching top_p
            lp = lp.scatter(1, order, sorted_lp.masked_fill(drop, float("-inf")))
        probs = torch.softmax(lp, dim=-1)
        probs = torch.where(torch.isnan(probs), torch.zeros_like(probs), probs)
        tok = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        gain = scores.view(-1) + lp.gather(1, tok[:, None]).squeeze(1)
        return tok, gain.view(self.B, self.K), None  # samples never change rows

    def finish(self, tokens, scores, generated):
        """Sampling: a row that drew EOS ends its hypothesis.  Both modes: an example is done
        when K hypotheses ended or no live beam is left."""
        if self.cfg.sampling:
            last = tokens[:, -1]
            alive = torch.isfinite(scores.view(-1))
            for r in ((last == EOS) & alive).nonzero().squeeze(1).tolist():
                b = r // self.K
                self.end(b, tokens[r, :-1], int(generated[r]) - 1, float(scores.view(-1)[r]))
                scores.view(-1)[r] = float("-inf")  # this row is spent
        if self._ended:
            counts = torch.tensor([len(h) for h in self.finished], device=self.device)
            self.done |= counts >= self.K
            self._ended = False
        if self._may_die or self.cfg.sampling:  # beams left without a finite score are over
            self.done |= ~torch.isfinite(scores).any(dim=1)

    def end(self, b: int, row_tokens, n_generated: int, logprob: float) -> None:
        if bool(self.done[b]):
            return
        seq = row_tokens.tolist()
        out = seq[len(seq) - n_generated:] if n_generated > 0 else []
        score = logprob / (n_generated + 1) ** self.cfg.len_penalty
        self.finished[b].append(Hypothesis(out, score, logprob))
        self._ended = True
