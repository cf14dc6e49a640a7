"""The generalist encoder-decoder: one transformer serves every task.

Encoder adaptors (`adaptors.py`) turn each encoder input (token ids, pixels, fbank frames,
video clips) into d_model vectors; the encoder reads the concatenation of an example's
segments; the decoder reads what its output head (`heads/`) feeds it and the head turns the
decoder's states into outputs (the token head: logits over the shared vocabulary, tied to the
token embedding).  Generation runs the decoder one position at a time over cached keys/values
(`decode_step`).

Shapes: B examples, S encoder positions, L decoder positions, D = d_model, H heads, V vocabulary,
N rows of one adaptor's inputs in the batch (several per example are possible)."""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..generate.search import StepTraits
from .adaptors import ADAPTORS, sincos
from .config import ModelConfig
from .heads import HEADS
from .layout import pack_weight, prepack_pays
from .transformer import KVCache, Layer

# model -> (weight versions, pack): a cache beside the model, so that copying or pickling a
# model never meets the prepacked weights (oneDNN's opaque tensors can be neither)
_PACKS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


class EncoderDecoder(nn.Module):
    # parameters that moved since earlier checkpoints were written: old name -> name
    RENAMED = {"dec_pos.weight": "heads.tokens.pos.weight"}

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
        self.adaptors = nn.ModuleDict({n: self._adaptor(n) for n in names})
        self.types = nn.ParameterDict({n: nn.Parameter(torch.zeros(d)) for n in names})  # which segment is which
        self.encoder = nn.ModuleList(Layer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(Layer(cfg, cross=True) for _ in range(cfg.decoder_layers))
        self.heads = nn.ModuleDict({h: HEADS.named(h).run(cfg, self.embed) for h in cfg.outputs})
        self.ln_enc, self.ln_dec, self.ln_emb = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        # what an example with no encoder input (`-> [TEXT:x]`) attends to
        self.empty = nn.Parameter(torch.zeros(1, d))

    def _adaptor(self, name: str) -> nn.Module:
        impl = ADAPTORS.named(name)
        return impl.run(self.cfg, self.embed) if impl.extra.get("shares_embedding") else impl.run(self.cfg)

    @property
    def tokens(self):
        """The token head (generation's `decode_step` drives it)."""
        return self.heads["tokens"]

    def embed_input(self, name: str, x, lengths=None):
        """One adaptor's inputs -> their vectors [N, T, D] (marked as that adaptor's) and lengths [N]."""
        if name not in self.adaptors:
            raise NotImplementedError(f"this model has no `{name}` adaptor (its tasks never used one)")
        h, n = self.adaptors[name](x, lengths)
        return h + self.types[name], n

    def run_encoder(self, x, mask):
        """The encoder over x [B, S, D] with mask [B, 1, 1, S] (None: nothing padded) -> memory."""
        x = self.drop(self.ln_emb(x))
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return self.ln_enc(x)

    def encode(self, batch, spans: list | None = None):
        """-> memory [B, S, D] and its mask [B, 1, 1, S] (True = a real position).  `spans`: a
        list that receives each example's segments as (start, length) in the memory."""
        parts = {name: self.embed_input(name, x, batch.lengths.get(name)) for name, x in batch.inputs.items()}
        rows = []
        for layout in batch.layout:  # one example: its segments in encoder order
            segs = [parts[a][0][i, : int(parts[a][1][i])] for a, i in layout]
            rows.append(torch.cat(segs) if segs else self.empty)  # [S_b, D]
            if spans is not None:
                starts = [0]
                for seg in segs:
                    starts.append(starts[-1] + seg.shape[0])
                spans.append([(a, int(b) - int(a)) for a, b in zip(starts, starts[1:])])
        sizes = [r.shape[0] for r in rows]
        lengths = torch.tensor(sizes, device=rows[0].device)
        x = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # [B, S, D]
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None])[:, None, None]  # [B,1,1,S]
        # no padding: attention without a mask is the same and cheaper (an exported graph
        # keeps the mask: it must serve padded batches)
        unpadded = min(sizes) == max(sizes) and not torch.onnx.is_in_onnx_export()
        return self.run_encoder(x, None if unpadded else mask), mask

    def decode(self, head: str, inputs, memory, memory_mask):
        """Teacher forcing: the head's inputs over L positions -> its outputs (the token head:
        tokens [B, L] -> logits [B, L, V]; causal: position t sees positions <= t, unless the
        head reads all positions at once, as the motion head's denoiser does)."""
        out = self.heads[head]
        # a head trained on its alignment (the frames head's guided attention) reads the last
        # layers' cross-attention weights, in training
        watched = self.decoder[len(self.decoder) - getattr(out, "attention_layers", 0):] if self.training else []
        for layer in watched:
            layer.cross.record = True
        try:
            fed = out.inputs(inputs)
            self_mask = None
            if isinstance(fed, tuple):  # (inputs, self-attention mask over padded positions)
                fed, self_mask = fed
            causal = getattr(out, "causal", True)
            x = self.drop(self.ln_emb(fed))
            for layer in self.decoder:
                x = layer(x, mask=self_mask, memory=memory, memory_mask=memory_mask, causal=causal)
            if not watched:
                return out.outputs(self.ln_dec(x))
            weights = torch.stack([layer.cross.weights for layer in watched]).mean(0)  # [B, L, S]
            return out.outputs(self.ln_dec(x), attention=(weights, memory_mask))
        finally:
            for layer in watched:
                layer.cross.record, layer.cross.weights = False, None

    def unprompted(self, memory, mask, rows=None):
        """The encoder output with the prompt taken away (all rows, or those `rows` [B] bool):
        one position holding `empty`, what an example without encoder input reads.  Classifier-
        free guidance trains on it (the motion head's dropped prompts) and samples against it."""
        if rows is None:
            return self.empty.expand(memory.shape[0], 1, -1), torch.ones_like(mask[..., :1])
        memory, mask = memory.clone(), mask.clone()
        memory[rows] = 0
        memory[rows, 0] = self.empty[0].to(memory.dtype)
        mask[rows] = False
        mask[rows, ..., 0] = True
        return memory, mask

    def denoise(self, memory, mask, x, level, known, lengths, head: str = "motion"):
        """One denoising call of a diffusion head: noisy frames x [B, T, F] at levels [B] (known
        [B, T] frames given clean, lengths [B]) -> the predicted clean frames."""
        from types import SimpleNamespace

        return self.decode(head, SimpleNamespace(inputs=x, level=level, known=known, lengths=lengths), memory, mask)

    def forward(self, batch):
        """-> the head's teacher-forced outputs; in training with a CTC target (text_phone), the
        pair (outputs, phone_ctc(...))."""
        ctc = getattr(batch.decoder, "ctc", None) if self.training else None
        spans = [] if ctc is not None else None
        memory, mask = self.encode(batch, spans)
        head = self.heads[batch.head]
        drop = getattr(batch.decoder, "drop", None)
        if drop is not None and bool(drop.any()):
            memory, mask = self.unprompted(memory, mask, drop)
        inputs = batch.decoder if getattr(head, "reads_batch", False) else batch.decoder.inputs
        out = self.decode(batch.head, inputs, memory, mask)
        if ctc is None:
            return out
        segment, first, count = (int(v) for v in ctc.tolist())
        return out, self.phone_ctc(memory, [row[segment] for row in spans], first, count)

    def phone_ctc(self, memory, spans, first: int, count: int):
        """The encoder's phoneme log-probabilities for a CTC loss (OFASys' speech_to_text_loss:
        the states of one segment, the audio, projected onto the phone tokens' embedding rows;
        the first of them is the blank).  memory [B, S, D]; spans: each example's (start,
        length) of the segment -> (log-probs [T, B, count] float32, lengths [B])."""
        lengths = torch.tensor([n for _, n in spans], device=memory.device)
        states = nn.utils.rnn.pad_sequence([memory[b, s:s + n] for b, (s, n) in enumerate(spans)], batch_first=True)
        logits = torch.nn.functional.linear(states, self.embed.weight[first:first + count])
        return logits.float().log_softmax(-1).transpose(0, 1), lengths

    # ------------------------------------------------------------------ generation

    def cross_cache(self, memory) -> list:
        """Each decoder layer's cross-attention keys/values of the encoder output: computed
        once per source, reused at every generation step."""
        return [layer.cross.keys_values(memory) for layer in self.decoder]

    def pack_decoder(self, rows: int = 1) -> dict:
        """The decoder's weights in the layouts fastest for `decode_step(pack=...)` on `rows`
        rows (the output projection under "proj"): prepacked for oneDNN on the CPU where that is
        faster, else transposed and contiguous (`layout.pack_weight`).  Kept until a weight
        changes (an optimizer step or a load bumps its version) or the rows call for other
        layouts, so consecutive generations share one pack."""
        linears = [m for m in self.decoder.modules() if isinstance(m, nn.Linear)]
        weighted = linears + [self.embed]  # the embedding's weight is the output projection's
        layouts = tuple(prepack_pays(m.weight, rows) for m in weighted)
        key = tuple((m.weight._version, m.weight.data_ptr(), m.weight.device) for m in weighted) + layouts
        cached = _PACKS.get(self)
        if cached is None or cached[0] != key:
            pack = {m: pack_weight(m.weight, p) for m, p in zip(linears, layouts)}
            pack["proj"] = pack_weight(self.embed.weight, layouts[-1])
            D, H = self.cfg.d_model, self.cfg.heads
            for layer in self.decoder:  # the cross-attention key/value projections, per head
                a = layer.cross
                w, b = a.kv.weight.detach(), a.kv.bias.detach()
                pack[(a, "k")] = w[:D].reshape(H, D // H, D).contiguous()
                pack[(a, "v")] = w[D:].reshape(H, D // H, D).transpose(1, 2).contiguous()
                pack[(a, "v_bias")] = b[D:].contiguous()
            _PACKS[self] = cached = (key, pack)
        return cached[1]

    def generation_traits(self, memory, capacity: int, rows: int | None = None) -> StepTraits:
        """What the search may give decode_step for the encoder output `memory` and `rows`
        decoder rows (default one per source): that output itself as `cross` where it is cheaper
        to read than every layer's keys/values (see Attention.cross_memory), one copy per source
        for all its beams, no memory mask when nothing is padded, and the weight pack for `rows`
        rows with KV caches for `capacity` positions.  The exported graphs take none of it (a
        copy per row, always a mask, (k, v) tensors)."""
        # per step, the keys/values form reads 2L [B, S, D] tensors, the memory form one [B, S, D]
        # memory and 2L [D, D] weights: the memory form where that at least halves the reads
        # (batches of long sources; at batch 1 its extra per-head products cost more than they save)
        B, S, D = memory.shape
        L = len(self.decoder)
        from_memory = 2 * (B * S * D + 2 * L * D * D) <= 2 * L * B * S * D
        return StepTraits(shared_cross=True, optional_mask=True, cross_from_memory=from_memory,
                          step_options={"pack": self.pack_decoder(rows or B), "capacity": capacity})

    def decode_step(self, tokens, start, past, cross, memory_mask, last: bool = False, pack=None,
                    capacity: int = 64, head: str = "tokens", **head_inputs):
        """Incremental decoding of an output head (`head`: the token head, or the code head
        of image outputs).  tokens [B, T]: the positions start..start+T-1
        (T > 1 only on the first call, past None; `start` an int, or a tensor [1] in an exported
        graph); past: each layer's self-attention (k, v) of the earlier positions, or None;
        cross: cross_cache(memory), or with `pack` the memory [B, S, D] itself.
        -> logits [B, T, V] (`last`: only the last position's, [B, V]), present.
        `pack`: pack_decoder(), for speed; with it the past is each layer's KVCache, preallocated
        for `capacity` positions (the most the generation will feed; it grows if that was short).
        `head_inputs`: what else the head's inputs take (the frames head: its prenet dropout `keep`)."""
        if past is None and pack is not None:
            past = [KVCache(capacity) for _ in self.decoder]
        # a step of one position runs on [B, D] rows: its heads are reshapes, no transposes
        single = past is not None and tokens.shape[1] == 1
        out = self.heads[head]
        x = self.ln_emb(out.inputs(tokens[:, 0] if single else tokens, start, **head_inputs))
        present = []
        from_memory = isinstance(cross, torch.Tensor)
        for i, layer in enumerate(self.decoder):
            x, kv = layer.step(x, None if past is None else past[i], cross if from_memory else cross[i],
                               memory_mask, pack)
            present.append(kv)
        if last and not single:
            x = x[:, -1]
        elif not last and single:
            x = x[:, None]
        return out.logits(self.ln_dec(x), pack), present

    @property
    def vocab_size(self) -> int:
        return self.cfg.vocab_size

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
