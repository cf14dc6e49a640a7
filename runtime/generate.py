"""Decoding for validation: batched greedy search with the forced prefix, min/max length and
the closed-set trie.  (Beam search, sampling and a key/value cache are built with inference.)"""
from __future__ import annotations

import torch

from .tokenizer import BOS, EOS, PAD


class Trie:
    """Candidate answers as token sequences (each ending in EOS); `allowed` gives the tokens
    that continue some candidate after a generated prefix."""

    def __init__(self, sequences):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for t in list(seq) + [EOS]:
                node = node.setdefault(t, {})

    def allowed(self, prefix) -> list[int]:
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node)


@torch.no_grad()
def greedy(model, batch, max_len: int = 64, min_len: int = 1, trie: Trie | None = None) -> list[list[int]]:
    """Generated tokens per example (after its forced prefix, without EOS)."""
    memory, mask = model.encode(batch)
    B = len(batch)
    prefixes = [batch.decoder_input[i, 1:1 + int(batch.prefix[i])].tolist() for i in range(B)]
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    for _ in range(max_len + 1):
        seqs = [[BOS] + prefixes[i] + out[i] for i in range(B)]
        longest = max(map(len, seqs))
        toks = torch.full((B, longest), PAD, dtype=torch.long, device=memory.device)
        for i, s in enumerate(seqs):
            toks[i, : len(s)] = torch.tensor(s, device=memory.device)
        logits = model.decode(toks, memory, mask).float()
        last = logits[torch.arange(B), torch.tensor([len(s) - 1 for s in seqs])]  # [B, V]
        for i in range(B):
            if done[i]:
                continue
            scores = last[i]
            if trie is not None:
                allowed = trie.allowed(out[i])
                if allowed:
                    keep = torch.full_like(scores, float("-inf"))
                    keep[allowed] = scores[allowed]
                    scores = keep
            if len(out[i]) < min_len:
                scores = scores.clone()
                scores[EOS] = float("-inf")
            if len(out[i]) >= max_len:
                done[i] = True
                continue
            t = int(scores.argmax())
            if t == EOS:
                done[i] = True
            else:
                out[i].append(t)
        if all(done):
            break
    return out
