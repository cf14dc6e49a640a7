"""The generalist encoder-decoder.

One transformer serves every task.  Modality adaptors turn each encoder input (token ids,
pixels, fbank frames, video clips) into a sequence of d_model vectors; the encoder reads the
concatenation of an example's segments; the decoder predicts tokens (text, box bins) with an
output projection tied to the token embedding.

Shapes: B examples, S encoder positions, L decoder positions, D = d_model, H heads,
N rows of one adaptor's inputs in the batch (several per example are possible)."""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ofac.settings import model_sizes, size_conflicts


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    ffn_dim: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 4
    heads: int = 4
    dropout: float = 0.1  # on embeddings and residual branches
    attention_dropout: float = 0.0  # on attention probabilities (0 keeps SDPA on its fused kernels)
    activation_dropout: float = 0.0  # inside the feed-forward block
    max_positions: int = 1024
    image_size: int = 256
    patch_size: int = 16
    n_mels: int = 80
    video_frames: int = 8
    adaptors: tuple[str, ...] = ("text",)  # encoder adaptors the run's tasks use
    bin_ids: tuple[int, int] = (0, 0)  # (first id, count) of the box-bin tokens: initialized in order

    @classmethod
    def from_settings(cls, model: dict, vocab_size: int, adaptors, bin_ids: tuple[int, int] = (0, 0)) -> "ModelConfig":
        """From a `.ofa` model block: the preset, then any field it overrides."""
        return cls(vocab_size=vocab_size, adaptors=tuple(sorted(set(adaptors))), bin_ids=tuple(bin_ids),
                   **model_sizes(model))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """From `to_dict` output read back from JSON (lists become tuples again)."""
        return cls(**{**d, "adaptors": tuple(d["adaptors"]), "bin_ids": tuple(d.get("bin_ids", (0, 0)))})

    def __post_init__(self):
        conflicts = size_conflicts(self.d_model, self.heads, self.image_size, self.patch_size,
                                   "image_resnet" in self.adaptors)
        if conflicts:
            raise ValueError(f"{conflicts[0].message}: {conflicts[0].help}")


# ------------------------------------------------------------------------------ layers

class Prepacked:
    """A weight reordered once into oneDNN's blocked layout for the few-row matmuls of a
    generation step (CPU, fp32).  Where it pays (`pack_weight` measures), the plain matmul
    repacks the weight on every call, which with few rows costs as much as the multiplication.
    `plain` is the weight itself, for when the layer must step aside (autocast, another dtype)."""

    def __init__(self, weight: torch.Tensor):
        self.plain = weight
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def _can_prepack(weight: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


# model -> (weight versions, pack): a cache beside the model, so that copying or pickling a
# model never meets the prepacked weights (oneDNN's opaque tensors can be neither)
_PACKS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()

# "cpu|torch|threads|out x in|rows" -> whether the prepacked layout is the faster there: measured
# once per machine (`_prepack_pays`), kept in the layout cache file; None until that is read
_PREPACK_FASTER: dict[str, bool] | None = None


def layout_cache_path() -> Path:
    """Where measured weight layouts are kept: $OFAC_CACHE_DIR, else $XDG_CACHE_HOME/ofac, else
    ~/.cache/ofac; the file layouts.json."""
    root = os.environ.get("OFAC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ofac")
    return Path(root) / "layouts.json"


@functools.lru_cache(maxsize=None)
def _cpu_name() -> str:
    """The CPU's model name and the vector extension torch uses on it (a VM's model name can be
    as generic as "Intel(R) Xeon(R) Processor")."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def _read_layouts() -> dict[str, bool]:
    """The layouts the cache file holds ({} where there is none or it is unreadable)."""
    try:
        known = json.loads(layout_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in known.items() if isinstance(v, bool)} if isinstance(known, dict) else {}


def _remember_layout(key: str, faster: bool) -> bool:
    """Add a measured layout to the cache file; -> the layout to take: the file's where another
    process measured the same key meanwhile (the first measurement stands, so processes that
    raced agree).  Best effort: an unwritable cache only means measuring again next time.
    Written whole to a temporary file, then renamed."""
    path = layout_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = _read_layouts()
        if key in known:
            return known[key]
        known[key] = faster
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
    return faster


def _layout_seconds(weight: torch.Tensor, rows: int) -> tuple[float, float]:
    """Seconds per matmul of `rows` rows by `weight` [out, in] (with a bias), in oneDNN's
    prepacked layout and in the transposed plain layout: the best of 3 interleaved rounds."""
    out_features, in_features = weight.shape
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(out_features)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    plain = weight.detach().t().contiguous()
    runs = (lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], ""),
            lambda: torch.addmm(bias, x, plain))

    def seconds(fn, n):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    with torch.autocast("cpu", enabled=False), torch.no_grad():  # the fp32 matmuls themselves
        for fn in runs:
            fn()  # oneDNN builds its kernel on the first call
        n = max(2, min(50, int(5e-4 / max(seconds(runs[1], 1), 1e-6))))  # about half a millisecond a round
        best = [math.inf, math.inf]
        for _ in range(3):
            for i, fn in enumerate(runs):
                best[i] = min(best[i], seconds(fn, n))
    return best[0], best[1]


def _layout_key(weight: torch.Tensor, rows: int) -> tuple[str, int]:
    """-> the layout cache's key for this weight at `rows` rows, and the rows measured: the next
    power of two."""
    rows = 1 << max(0, rows - 1).bit_length()
    out_features, in_features = weight.shape
    return (f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|"
            f"{out_features} x {in_features}|{rows} rows"), rows


def _prepack_pays(weight: torch.Tensor, rows: int) -> bool:
    """Whether oneDNN's prepacked layout multiplies `rows` rows by this weight faster than the
    transposed plain layout.  Which is faster depends on the CPU, the shape and the rows (on an
    AVX-512 EPYC prepacked is 1.2-2x faster at 16 rows for weights of 256 x 768 and up; on a
    Xeon with AMX it is 2x slower at 1 row and about even at 80), so it is measured, once per
    shape, power-of-two row count and thread count, in a few milliseconds, and kept per machine
    (`layout_cache_path`): the layouts change the logits in their last bits, so every process on
    a machine (training's validation, `ofac eval`) must take the same ones to give the same
    answers.  Prepacked only when at least 10% faster.  OFAC_PREPACK=always|never skips the
    measurement."""
    global _PREPACK_FASTER
    if not _can_prepack(weight):
        return False
    policy = os.environ.get("OFAC_PREPACK", "auto")
    if policy in ("always", "never"):
        return policy == "always"
    if _PREPACK_FASTER is None:
        _PREPACK_FASTER = _read_layouts()
    key, rows = _layout_key(weight, rows)
    if key not in _PREPACK_FASTER:
        packed, plain = _layout_seconds(weight, rows)
        _PREPACK_FASTER[key] = _remember_layout(key, packed < 0.9 * plain)
    return _PREPACK_FASTER[key]


def pack_weight(weight: torch.Tensor, prepack: bool):
    """A pack entry for the weight [out, in] of a linear map: Prepacked (`prepack`, where
    `_prepack_pays`), else the weight transposed and contiguous (the fastest plain layout for
    addmm)."""
    if prepack:
        return Prepacked(weight)
    return weight.detach().t().contiguous()


def linear(layer: nn.Linear | None, x, pack: dict | None = None, gelu: bool = False, key=None):
    """layer(x), then GELU if asked.  With a generation `pack` (GeneralistModel.pack_decoder)
    the weight comes from the pack (under `key`, else under the layer): prepacked for oneDNN,
    or transposed once per generation, layouts that are faster for the few rows of a step.
    `layer` None: no bias (the output projection)."""
    bias = None if layer is None else layer.bias
    if pack is None:
        y = layer(x)
        return F.gelu(y) if gelu else y
    w = pack[layer if key is None else key]
    if isinstance(w, Prepacked):
        if x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type):
            return torch.ops.mkldnn._linear_pointwise(x, w.weight, bias, "gelu" if gelu else "none", [],
                                                      "none" if gelu else "")
        y = F.linear(x, w.plain, bias)  # autocast decides
    else:
        x2 = x.reshape(-1, x.shape[-1])
        y = (torch.mm(x2, w) if bias is None else torch.addmm(bias, x2, w)).view(*x.shape[:-1], -1)
    return F.gelu(y) if gelu else y


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
        [H, D/H, D] and W_v^T as [H, D, D/H] (GeneralistModel.pack_decoder)."""
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


class Block(nn.Module):
    """Pre-LayerNorm transformer block; with `cross`, a decoder block."""

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
        """A decoder block on new positions with cached keys/values (eval mode, no dropout)."""
        h, present = self.attn.cached(self.ln1(x), past, pack)
        x = x + h
        if isinstance(cross_kv, torch.Tensor):  # the encoder output itself (see cross_memory)
            x = x + self.cross.cross_memory(self.ln_cross(x), cross_kv, memory_mask, pack)
        else:
            x = x + self.cross.cross_cached(self.ln_cross(x), cross_kv[0], cross_kv[1], memory_mask, pack)
        up, down = self.ffn[0], self.ffn[3]
        return x + linear(down, linear(up, self.ln2(x), pack, gelu=True), pack), present


# ------------------------------------------------------------------------------ adaptors

class TextAdaptor(nn.Module):
    """Token ids -> the shared embedding plus learned positions restarting at each segment."""

    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        self.embed = embed
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.scale = math.sqrt(cfg.d_model)

    def forward(self, ids, lengths=None):
        # ids: [N, T] -> [N, T, D], lengths [N]
        T = ids.shape[1]
        if T > self.pos.num_embeddings:
            raise ValueError(f"a token sequence of {T} exceeds max_positions={self.pos.num_embeddings}")
        x = self.embed(ids) * self.scale + self.pos(torch.arange(T, device=ids.device))
        if lengths is None:
            lengths = torch.full((ids.shape[0],), T, device=ids.device)
        return x, lengths


def sincos(positions: torch.Tensor, d: int, span: int) -> torch.Tensor:
    """[n] positions in [0, span) -> [n, d] sin/cos features at geometric frequencies from one
    radian per position down to about a quarter turn over the span (the Transformer's scheme with
    its 10000 scaled to the span: a short grid keeps every feature informative)."""
    freq = 1.0 / (4.0 * span) ** (torch.arange(d // 2, dtype=torch.float32) / (d // 2))
    angle = positions.float()[:, None] * freq[None]
    return torch.cat([angle.sin(), angle.cos()], 1)


def sincos_2d(grid: int, d: int) -> torch.Tensor:
    """[grid*grid, d] initial positions of an image grid (row-major): half the features encode
    the row, half the column (as MAE).  Learnable afterwards; starting from coordinates rather
    than noise is what lets a model trained from scratch localize (grounding, detection) early."""
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos(ys.flatten(), d // 2, grid), sincos(xs.flatten(), d - d // 2, grid)], 1)


class PatchAdaptor(nn.Module):
    """Images [N, 3, S, S] -> (S/p)^2 patch vectors (a ViT-style convolutional patch embedding)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.grid = cfg.image_size // cfg.patch_size
        self.pos = nn.Parameter(sincos_2d(self.grid, cfg.d_model))

    def forward(self, images, lengths=None):
        x = self.proj(images)  # [N, D, g, g]
        if x.shape[-1] != self.grid:
            raise ValueError(f"images of {images.shape[-1]} px do not match the model's image_size")
        x = x.flatten(2).transpose(1, 2) + self.pos  # [N, g*g, D]
        return x, torch.full((x.shape[0],), x.shape[1], device=x.device)


class ResNetAdaptor(nn.Module):
    """`adaptor=image_resnet`: a small residual convolutional stem trained from scratch, one
    stride-2 stage per halving, down to the model's `patch_size` (8 px -> 3 stages, 16 -> 4), so
    it yields the same (S/p)^2 grid as the patch embedding.  Overlapping 3x3 receptive fields
    see across patch borders: on the zoo it tells shapes and colours apart better than the
    patch embedding (VQA, captions, detection), while grounding localizes faster on patches.

    Normalization is GroupNorm, not BatchNorm: a micro-batch holds one task's images, and
    running batch statistics would mix tasks as different as digit scans and scenes."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, p = cfg.d_model, cfg.patch_size
        n = p.bit_length() - 1  # stride-2 stages: ModelConfig checked p is a power of two

        def norm(c):
            return nn.GroupNorm(math.gcd(8, c), c)

        def stage(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), norm(cout), nn.GELU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), norm(cout))

        widths = [3] + [min(32 << i, d) for i in range(n - 1)] + [d]
        self.stages = nn.ModuleList(stage(a, b) for a, b in zip(widths, widths[1:]))
        self.skips = nn.ModuleList(nn.Conv2d(a, b, 1, stride=2) for a, b in zip(widths, widths[1:]))
        self.grid = cfg.image_size // p
        self.pos = nn.Parameter(sincos_2d(self.grid, d))

    def forward(self, images, lengths=None):
        x = images
        for stage, skip in zip(self.stages, self.skips):
            x = F.gelu(stage(x) + skip(x))  # [N, C, H/2, W/2]
        if x.shape[-1] != self.grid:
            raise ValueError(f"images of {images.shape[-1]} px do not match the model's image_size")
        x = x.flatten(2).transpose(1, 2) + self.pos  # [N, (S/p)^2, D]
        return x, torch.full((x.shape[0],), x.shape[1], device=x.device)


class AudioAdaptor(nn.Module):
    """fbank frames [N, T, 80] -> two stride-2 convolutions (T/4 steps) plus learned positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.conv = nn.Sequential(nn.Conv1d(cfg.n_mels, d, 5, stride=2, padding=2), nn.GELU(),
                                  nn.Conv1d(d, d, 5, stride=2, padding=2), nn.GELU())
        self.pos = nn.Embedding(cfg.max_positions, d)

    def forward(self, frames, lengths):
        x = self.conv(frames.transpose(1, 2)).transpose(1, 2)  # [N, ceil(T/4), D]
        if x.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"{x.shape[1]} audio steps exceed max_positions={self.pos.num_embeddings}")
        x = x + self.pos(torch.arange(x.shape[1], device=x.device))
        return x, torch.div(lengths + 3, 4, rounding_mode="floor")


class VideoAdaptor(nn.Module):
    """Clips [N, F, 3, S, S] -> per-frame patches plus a frame (time) embedding: F * (S/p)^2 steps."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patches = PatchAdaptor(cfg)
        self.frame = nn.Embedding(cfg.video_frames, cfg.d_model)

    def forward(self, clips, lengths=None):
        N, Fr = clips.shape[:2]
        x, _ = self.patches(clips.flatten(0, 1))  # [N*F, P, D]
        x = x.view(N, Fr, -1, x.shape[-1]) + self.frame(torch.arange(Fr, device=x.device))[None, :, None]
        x = x.flatten(1, 2)  # [N, F*P, D]
        return x, torch.full((N,), x.shape[1], device=x.device)


def build_adaptor(name: str, cfg: ModelConfig, embed: nn.Embedding) -> nn.Module:
    if name == "text":
        return TextAdaptor(cfg, embed)
    if name in ("image_patch", "image_vit", "image_patch_embed"):
        return PatchAdaptor(cfg)
    if name == "image_resnet":
        return ResNetAdaptor(cfg)
    if name == "audio_fbank":
        return AudioAdaptor(cfg)
    if name == "video_image_sequence":
        return VideoAdaptor(cfg)
    raise NotImplementedError(f"adaptor `{name}` is not supported by the ofac runtime yet")


# ------------------------------------------------------------------------------ model

class GeneralistModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=1)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        first, count = cfg.bin_ids
        if count:  # box bins start ordered: neighbouring coordinates alike (unit norm, like the rest)
            with torch.no_grad():
                self.embed.weight[first:first + count] = sincos(torch.arange(count), d, count) * (2 / d) ** 0.5
        names = sorted(set(cfg.adaptors) | {"text"})
        self.adaptors = nn.ModuleDict({n: build_adaptor(n, cfg, self.embed) for n in names})
        self.types = nn.ParameterDict({n: nn.Parameter(torch.zeros(d)) for n in names})  # which segment is which
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.decoder_layers))
        self.dec_pos = nn.Embedding(cfg.max_positions, d)
        self.ln_enc, self.ln_dec, self.ln_emb = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        # what an example with no encoder input (`-> [TEXT:x]`) attends to
        self.empty = nn.Parameter(torch.zeros(1, d))

    def encode(self, batch):
        """-> memory [B, S, D] and its mask [B, 1, 1, S] (True = a real position)."""
        parts = {}
        for name, x in batch.inputs.items():
            if name not in self.adaptors:
                raise NotImplementedError(f"this model has no `{name}` adaptor (its tasks never used one)")
            h, n = self.adaptors[name](x, batch.lengths.get(name))  # [N, T, D], [N]
            parts[name] = (h + self.types[name], n)
        rows = []
        for layout in batch.layout:  # one example: its segments in encoder order
            segs = [parts[a][0][i, : int(parts[a][1][i])] for a, i in layout]
            rows.append(torch.cat(segs) if segs else self.empty)  # [S_b, D]
        sizes = [r.shape[0] for r in rows]
        lengths = torch.tensor(sizes, device=rows[0].device)
        x = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # [B, S, D]
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None])[:, None, None]  # [B,1,1,S]
        x = self.drop(self.ln_emb(x))
        # no padding: attention without a mask is the same and cheaper (an exported graph
        # keeps the mask: it must serve padded batches)
        unpadded = min(sizes) == max(sizes) and not torch.onnx.is_in_onnx_export()
        for block in self.encoder:
            x = block(x, mask=None if unpadded else mask)
        return self.ln_enc(x), mask

    def decode(self, tokens, memory, memory_mask):
        """tokens [B, L] -> logits [B, L, V] (causal: position t sees tokens <= t)."""
        L = tokens.shape[1]
        if L > self.dec_pos.num_embeddings:
            raise ValueError(f"a decoder sequence of {L} exceeds max_positions={self.dec_pos.num_embeddings}")
        x = self.embed(tokens) * math.sqrt(self.cfg.d_model) + self.dec_pos(torch.arange(L, device=tokens.device))
        x = self.drop(self.ln_emb(x))
        for block in self.decoder:
            x = block(x, memory=memory, memory_mask=memory_mask, causal=True)
        return self.ln_dec(x) @ self.embed.weight.T  # tied output projection, [B, L, V]

    def cross_cache(self, memory) -> list:
        """Each decoder layer's cross-attention keys/values of the encoder output: computed
        once per source, reused at every generation step."""
        return [block.cross.keys_values(memory) for block in self.decoder]

    def pack_decoder(self, rows: int = 1) -> dict:
        """The decoder's weights in the layouts fastest for `decode_step(pack=...)` on `rows`
        rows (the output projection under "proj"): prepacked for oneDNN on the CPU where that is
        faster, else transposed and contiguous (`pack_weight`).  Kept until a weight changes (an
        optimizer step or a load bumps its version) or the rows call for other layouts, so
        consecutive generations share one pack."""
        linears = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        weighted = linears + [self.embed]  # the embedding's weight is the output projection's
        layouts = tuple(_prepack_pays(m.weight, rows) for m in weighted)
        key = tuple((m.weight._version, m.weight.data_ptr(), m.weight.device) for m in weighted) + layouts
        cached = _PACKS.get(self)
        if cached is None or cached[0] != key:
            pack = {m: pack_weight(m.weight, p) for m, p in zip(linears, layouts)}
            pack["proj"] = pack_weight(self.embed.weight, layouts[-1])
            D, H = self.cfg.d_model, self.cfg.heads
            for block in self.decoder:  # the cross-attention key/value projections, per head
                a = block.cross
                w, b = a.kv.weight.detach(), a.kv.bias.detach()
                pack[(a, "k")] = w[:D].reshape(H, D // H, D).contiguous()
                pack[(a, "v")] = w[D:].reshape(H, D // H, D).transpose(1, 2).contiguous()
                pack[(a, "v_bias")] = b[D:].contiguous()
            _PACKS[self] = cached = (key, pack)
        return cached[1]

    def generation_traits(self, memory, capacity: int, rows: int | None = None):
        """What the search may give decode_step (search.StepTraits) for the encoder output
        `memory` and `rows` decoder rows (default one per source): that output itself as
        `cross` where it is cheaper to read than every layer's keys/values (see
        Attention.cross_memory), one copy per source for all its beams, no memory mask when
        nothing is padded, and the weight pack for `rows` rows with KV caches for `capacity`
        positions.  The exported graphs take none of it (a copy per row, always a mask, (k, v)
        tensors)."""
        from .search import StepTraits

        # per step, the keys/values form reads 2L [B, S, D] tensors, the memory form one [B, S, D]
        # memory and 2L [D, D] weights: the memory form where that at least halves the reads
        # (batches of long sources; at batch 1 its extra per-head products cost more than they save)
        B, S, D = memory.shape
        L = len(self.decoder)
        from_memory = 2 * (B * S * D + 2 * L * D * D) <= 2 * L * B * S * D
        return StepTraits(shared_cross=True, optional_mask=True, cross_from_memory=from_memory,
                          step_options={"pack": self.pack_decoder(rows or B), "capacity": capacity})

    def decode_step(self, tokens, start: int, past, cross, memory_mask, last: bool = False, pack=None,
                    capacity: int = 64):
        """Incremental decoding.  tokens [B, T]: the positions start..start+T-1 (T > 1 only on
        the first call, past None); past: each layer's self-attention (k, v) of the earlier
        positions, or None; cross: cross_cache(memory), or with `pack` the memory [B, S, D]
        itself.  -> logits [B, T, V] (`last`: only the last position's, [B, 1, V]), present.
        `pack`: pack_decoder(), for speed; with it the past is each layer's KVCache, preallocated
        for `capacity` positions (the most the generation will feed; it grows if that was
        short)."""
        if past is None and pack is not None:
            past = [KVCache(capacity) for _ in self.decoder]
        # a step of one position runs on [B, D] rows: its heads are reshapes, no transposes
        single = past is not None and tokens.shape[1] == 1
        if single:
            tokens = tokens[:, 0]
        pos = self.dec_pos(torch.arange(start, start + (1 if single else tokens.shape[1]), device=tokens.device))
        x = self.ln_emb(self.embed(tokens) * math.sqrt(self.cfg.d_model) + pos)
        present = []
        from_memory = isinstance(cross, torch.Tensor)
        for i, block in enumerate(self.decoder):
            x, kv = block.step(x, None if past is None else past[i], cross if from_memory else cross[i],
                               memory_mask, pack)
            present.append(kv)
        if single:
            x = x[:, None]
        elif last:
            x = x[:, -1:]
        x = self.ln_dec(x)
        return (linear(None, x, pack, key="proj") if pack is not None else F.linear(x, self.embed.weight)), present

    def forward(self, batch):
        memory, mask = self.encode(batch)
        return self.decode(batch.decoder_input, memory, mask)

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def token_losses(logits, target, mask, eps: float = 0.0):
    """At the positions that carry loss: the label-smoothed loss and the NLL, flat vectors [N].
    logits [B, L, V]; target [B, L]; mask [B, L] bool."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask]
    smooth = -lprobs.mean(-1)[mask]
    return (1 - eps) * nll + eps * smooth, nll


def label_smoothed_loss(logits, target, mask, eps: float = 0.1):
    """Mean label-smoothed cross-entropy and mean NLL over the positions that carry loss."""
    loss, nll = token_losses(logits, target, mask, eps)
    n = max(1, int(mask.sum()))
    return loss.sum() / n, nll.sum() / n
