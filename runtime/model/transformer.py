"""The transformer's parts: attention (with its incremental forms for generation) and the
pre-LayerNorm layer.

Shapes: B rows, T new positions, S attended positions, D = d_model, H heads, D/H per head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layout import linear


def attend(q, k, v, mask=None, causal: bool = False, dropout: float = 0.0):
    """Scaled dot-product attention, q [B, H, T, D/H] over k, v [B, H, S, D/H]; mask [B, 1, 1, S]
    additive.  Exported to ONNX it becomes one `Attention` node (opset 23), whose ONNX Runtime
    kernel wants the mask spelled out over the query positions, [B, 1, T, S]."""
    if mask is not None and torch.compiler.is_exporting():
        mask = mask.expand(-1, -1, q.shape[2], -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout)


class KVCache:
    """One decoder layer's self-attention keys and values during eager generation, in buffers
    allocated once for the whole generation ([B, H, capacity, D/H]): each step writes its one
    new position in place, where concatenating copies the whole past every step."""

    def __init__(self, capacity: int):
        self.capacity, self.n = capacity, 0
        self.k = self.v = None
        self._spare = None  # the buffers `reorder` gathers into

    def append(self, k, v):
        """Add positions k, v [B, H, T, D/H]; -> the keys and values of all positions so far."""
        B, H, T, Dh = k.shape
        if self.k is None or self.n + T > self.k.shape[2]:  # first call, or past the capacity hint
            size = max(self.capacity, 2 * (self.n + T))
            grown_k, grown_v = k.new_empty(B, H, size, Dh), v.new_empty(B, H, size, Dh)
            if self.n:
                grown_k[:, :, :self.n], grown_v[:, :, :self.n] = self.k[:, :, :self.n], self.v[:, :, :self.n]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.n:self.n + T] = k
        self.v[:, :, self.n:self.n + T] = v
        self.n += T
        return self.k[:, :, :self.n], self.v[:, :, :self.n]

    def reorder(self, order) -> "KVCache":
        """Keep rows `order` (beam search moves beams), in place: the filled positions are
        gathered into a second buffer pair, which then swaps with the first, so a search
        allocates no memory per step."""
        n = self.n
        if self._spare is None or self._spare[0].shape != self.k.shape:
            self._spare = (torch.empty_like(self.k), torch.empty_like(self.v))
        k, v = self._spare
        torch.index_select(self.k[:, :, :n], 0, order, out=k[:, :, :n])
        torch.index_select(self.v[:, :, :n], 0, order, out=v[:, :, :n])
        self._spare, self.k, self.v = (self.k, self.v), k, v
        return self


class Attention(nn.Module):
    """Multi-head attention.  Self-attention projects queries, keys and values with one fused
    matrix (`qkv`); cross-attention projects queries from x and keys/values from the memory
    (`kv`), which generation computes once per source."""

    def __init__(self, d: int, heads: int, dropout: float, cross: bool = False):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        if cross:
            self.q, self.kv = nn.Linear(d, d), nn.Linear(d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        # set by a head that trains on the alignment (guided attention): the next cross-attention
        # forward also keeps its weights averaged over heads, [B, T, S], in `weights`
        self.record, self.weights = False, None

    def _split(self, x, n: int):
        """[B, T, n*D] -> n tensors [B, H, T, D/H] (views).  One transpose of all n*H heads, then a
        split: exported, a Reshape, a Transpose and a Split, where unbinding a permuted
        [n, B, H, T, D/H] costs a Slice and a Squeeze per tensor.  One position per row may come
        as [B, n*D] (a generation step): its heads are a reshape, no transpose at all."""
        if x.dim() == 2:
            heads = x.view(x.shape[0], n * self.heads, 1, -1)  # [B, n*H, 1, D/H]
        else:
            B, T, _ = x.shape
            heads = x.view(B, T, n * self.heads, -1).transpose(1, 2)  # [B, n*H, T, D/H]
        return heads.split(self.heads, dim=1) if n > 1 else (heads,)

    @staticmethod
    def _merge(y, x):
        """Attention output [B, H, T, D/H] -> x's layout, [B, T, D] or (one position) [B, D]."""
        return y.reshape(x.shape) if x.dim() == 2 else y.transpose(1, 2).reshape(x.shape)

    def forward(self, x, memory=None, mask=None, causal=False):
        # x: [B, T, D]; memory: [B, S, D] (cross-attention) or None; mask: [B, 1, 1, S] True = attend
        if memory is None:
            q, k, v = self._split(self.qkv(x), 3)  # [B, H, T, D/H] each
        else:
            (q,) = self._split(self.q(x), 1)
            k, v = self._split(self.kv(memory), 2)  # [B, H, S, D/H]
        if self.record and memory is not None:  # the weights spelled out (SDPA does not return them)
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores.float(), -1).to(q.dtype)
            self.weights = weights.mean(1)
            return self.out(self._merge(weights @ v, x))
        y = attend(q, k, v, mask, causal and mask is None, self.dropout if self.training else 0.0)
        return self.out(self._merge(y, x))  # [B, T, D]

    # -- incremental decoding: keys/values are kept, one new position is computed per step

    def keys_values(self, memory):
        """A cross-attention's keys/values of the memory [B, S, D] -> k, v [B, H, S, D/H]."""
        return self._split(self.kv(memory), 2)

    def cached(self, x, past=None, pack=None):
        """Self-attention of the new positions x [B, T, D] (or one position, [B, D]) over the
        earlier positions' cached (k, v) (`past`, None on the first call) and their own;
        -> output, the extended (k, v)."""
        q, k, v = self._split(linear(self.qkv, x, pack), 3)
        first = past is None or (isinstance(past, KVCache) and past.n == 0)
        if isinstance(past, KVCache):  # eager generation: written in place, no copy of the past
            present = past
            k, v = past.append(k, v)
        else:  # (k, v) tensors: the exported graph's form, and the plain eager one
            if past is not None:
                k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # [B, H, t+T, D/H]
            present = (k, v)
        # the first call feeds several positions at once (BOS and the forced prefix): causal
        # (for one position the same as not; no branch on T keeps the graph exportable)
        y = attend(q, k, v, causal=first)
        return linear(self.out, self._merge(y, x), pack), present

    def cross_cached(self, x, k, v, mask, pack=None):
        """x [N, T, D] (or one position, [N, D]) over keys/values k, v [B, H, S, D/H] of B
        sources.  N = B*K rows (K beams or samples per source, consecutive): the K rows of a
        source attend as K*T queries to its one copy of the keys/values, which are then never
        copied per beam."""
        (q,) = self._split(linear(self.q, x, pack), 1)  # [N, H, T, D/H]
        N, B = x.shape[0], k.shape[0]
        if B == N:
            return linear(self.out, self._merge(attend(q, k, v, mask), x), pack)
        H, T, Dh = q.shape[1], q.shape[2], q.shape[3]
        K = N // B
        q = q.view(B, K, H, T, Dh).transpose(1, 2).reshape(B, H, K * T, Dh)
        y = attend(q, k, v, mask)  # [B, H, K*T, D/H]
        y = y.view(B, H, K, T, Dh).permute(0, 2, 3, 1, 4)  # [B, K, T, H, D/H]
        return linear(self.out, y.reshape(x.shape), pack)

    def cross_memory(self, x, memory, mask, pack):
        """Cross-attention of x [N, T, D] (or [N, D]) over the encoder output itself, memory
        [B, S, D] of B sources (N = B*K rows, K consecutive rows per source), for eager
        generation.  The key and value projections move to the query and to the attended
        memory: per head, q.(W_k m + b_k) = (W_k^T q).m + q.b_k, and the last term is the same
        at every position, so softmax drops it; sum_s p_s (W_v m_s + b_v) = W_v (sum_s p_s m_s)
        + b_v, as the p_s sum to 1.  A generation then keeps one [B, S, D] memory for all
        layers instead of every layer's keys and values (2L times less to read per step); the
        exported graphs keep the keys/values form (`cross_cached`).  `pack` holds W_k as
        [H, D/H, D] and W_v^T as [H, D, D/H] (EncoderDecoder.pack_decoder)."""
        D = x.shape[-1]
        NT = x.numel() // D  # rows times positions
        B, H = memory.shape[0], self.heads
        wk, wv_t = pack[(self, "k")], pack[(self, "v")]
        # heads are the batch of the per-head products (a broadcast matmul would copy the weights
        # once per row)
        q = linear(self.q, x, pack).view(NT, H, D // H).transpose(0, 1)  # [H, N*T, D/H]
        q = torch.bmm(q, wk).view(H, B, -1, D).transpose(0, 1)  # [B, H, K*T, D]: in the memory's space
        y = F.scaled_dot_product_attention(q.reshape(B, 1, -1, D), memory[:, None], memory[:, None],
                                           attn_mask=mask, scale=(D // H) ** -0.5)  # [B, 1, H*K*T, D]
        y = torch.bmm(y.view(B, H, -1, D).transpose(0, 1).reshape(H, NT, D), wv_t)  # [H, N*T, D/H]
        y = y.transpose(0, 1).reshape(x.shape) + pack[(self, "v_bias")]
        return linear(self.out, y, pack)


class Layer(nn.Module):
    """A pre-LayerNorm transformer layer; with `cross`, a decoder layer."""

    def __init__(self, cfg: ModelConfig, cross: bool = False):
        super().__init__()
        d = cfg.d_model
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, cfg.heads, cfg.attention_dropout)
        self.cross = Attention(d, cfg.heads, cfg.attention_dropout, cross=True) if cross else None
        self.ln_cross = nn.LayerNorm(d) if cross else None
        self.ln2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(), nn.Dropout(cfg.activation_dropout),
                                 nn.Linear(cfg.ffn_dim, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, memory=None, memory_mask=None, causal=False):
        x = x + self.drop(self.attn(self.ln1(x), mask=mask, causal=causal))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.ln_cross(x), memory=memory, mask=memory_mask))
        return x + self.drop(self.ffn(self.ln2(x)))

    def step(self, x, past, cross_kv, memory_mask, pack=None):
        """A decoder layer on new positions with cached keys/values (eval mode, no dropout)."""
        h, present = self.attn.cached(self.ln1(x), past, pack)
        x = x + h
        if isinstance(cross_kv, torch.Tensor):  # the encoder output itself (see cross_memory)
            x = x + self.cross.cross_memory(self.ln_cross(x), cross_kv, memory_mask, pack)
        else:
            x = x + self.cross.cross_cached(self.ln_cross(x), cross_kv[0], cross_kv[1], memory_mask, pack)
        up, down = self.ffn[0], self.ffn[3]
        return x + linear(down, linear(up, self.ln2(x), pack, gelu=True), pack), present
