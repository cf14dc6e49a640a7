"""TEXT: BPE tokens, with `max_length`, `uncased`, `no_punctuation`, BART span masking
(`mask_ratio`) and random token noise (`noise_ratio`), the last two at train time only; and
`category`: a class label as its one token (the run's vocabulary has a token per label of the
training data)."""
from __future__ import annotations

import string

import numpy as np

from ..vocab.tokenizer import BLANK_PHONE, MASK, UNK
from .base import Context, Tokens, preprocessors
from .g2p import ctc_phones

REGISTRY = preprocessors()

_PUNCT = str.maketrans("", "", string.punctuation)
POISSON_LAMBDA = 3.0


def clean(text: str, attrs: dict) -> str:
    if attrs.get("uncased"):
        text = text.lower()
    if attrs.get("no_punctuation"):
        text = text.translate(_PUNCT)
    return text


def as_text(value, what: str = "text") -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected {what} (a string), found {type(value).__name__}")


def _texts(value, attrs: dict) -> list[str]:
    """What the run's tokenizer is trained on from a cell (a list: each element)."""
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@REGISTRY.register("text", attrs=("text", "max_length", "uncased", "no_punctuation", "mask_ratio", "noise_ratio"),
                   corpus=_texts, cell=lambda value, attrs, base_dir: as_text(value))
def text(value, attrs: dict, ctx: Context) -> Tokens:
    """A cell's text, or with no argument the instruction's constant `text`."""
    raw = attrs.get("text") if value is None else as_text(value)
    ids = ctx.vocab.encode(clean(raw, attrs))
    if attrs.get("max_length"):
        ids = ids[: attrs["max_length"]]
    inputs = None
    if ctx.training and attrs.get("mask_ratio"):
        inputs = span_mask(ids, attrs["mask_ratio"], ctx.rng)
    if ctx.training and attrs.get("noise_ratio"):
        inputs = add_noise(inputs if inputs is not None else ids, attrs["noise_ratio"], ctx)
    return Tokens(ids, inputs)


def span_mask(ids: list[int], ratio: float, rng: np.random.Generator) -> list[int]:
    """BART text infilling: spans (lengths ~ Poisson(3)) covering `ratio` of the tokens are
    each replaced by one <mask>."""
    n = len(ids)
    budget = int(round(n * ratio))
    if budget == 0:
        return list(ids)
    masked = np.zeros(n, dtype=bool)
    starts = []
    while masked.sum() < budget:
        length = max(1, min(int(rng.poisson(POISSON_LAMBDA)), budget - int(masked.sum())))
        start = int(rng.integers(0, max(1, n - length + 1)))
        if masked[start:start + length].any():
            free = np.flatnonzero(~masked)
            start, length = int(free[rng.integers(len(free))]), 1
        masked[start:start + length] = True
        starts.append(start)
    out, i = [], 0
    while i < n:
        if masked[i]:
            out.append(MASK)
            while i < n and masked[i]:
                i += 1
        else:
            out.append(ids[i])
            i += 1
    return out


def add_noise(ids: list[int], ratio: float, ctx: Context) -> list[int]:
    """Replace each token by a random ordinary token with probability `ratio`."""
    low = len(ctx.vocab.reserved_ids)  # specials and reserved tokens come first: the first BPE id
    high = len(ctx.vocab)
    flips = ctx.rng.random(len(ids)) < ratio
    return [int(ctx.rng.integers(low, high)) if f else t for t, f in zip(ids, flips)]


def _cell_phones(value, attrs: dict) -> list[str]:
    """The CTC phonemes of a text_phone cell's text, cleaned as the BPE tokens are."""
    return ctc_phones(clean(as_text(value), attrs))


def _phones(value, attrs: dict) -> list[str]:
    """The phonemes of a text_phone cell with the CTC blank (each gets a reserved token)."""
    return _cell_phones(value, attrs) + [BLANK_PHONE]


@REGISTRY.register("text_phone", attrs=("max_length", "uncased", "no_punctuation", "noise_ratio"),
                   corpus=_texts, symbols=("phones", _phones), cell=lambda value, attrs, base_dir: as_text(value))
def text_phone(value, attrs: dict, ctx: Context) -> Tokens:
    """An ASR target (OFASys' `TextForPhonePreprocess`): the text's BPE tokens for the decoder,
    and its phonemes (espeak-ng, without stress) as the encoder's CTC target in `meta["phones"]`:
    offsets into the run's phone tokens, the blank first.  A phoneme the vocabulary lacks (met
    only outside the training data) is left out of the CTC target."""
    out = text(value, attrs, ctx)
    first = ctx.vocab.phone_ids.get(BLANK_PHONE)
    if first is None:
        raise ValueError("this vocabulary has no CTC blank: it was trained without text_phone targets")
    ids = (ctx.vocab.phone_ids.get(p) for p in _cell_phones(value, attrs))
    out.meta = {"phones": [i - first for i in ids if i is not None]}
    return out


def label_of(value, attrs: dict) -> str:
    """A category cell's class: its text, cleaned as `uncased`/`no_punctuation` say, stripped."""
    return " ".join(clean(as_text(value, "a class label"), attrs).split())


@REGISTRY.register("category", attrs=("uncased", "no_punctuation", "max_length"),
                   symbols=("labels", lambda value, attrs: [label_of(value, attrs)]),
                   cell=lambda value, attrs, base_dir: label_of(value, attrs))
def category(value, attrs: dict, ctx: Context) -> Tokens:
    """One token for the cell's class (OFASys' `CategoryPreprocess`: a label dictionary, one
    symbol per class).  A class the training data never had has no token: an error on a training
    row (the tokenizer was given, not trained on this data), `<unk>` elsewhere (a validation
    label the model cannot answer; it scores as wrong)."""
    label = label_of(value, attrs)
    token = ctx.vocab.label_ids.get(label)
    if token is None:
        if ctx.training:
            known = ", ".join(sorted(ctx.vocab.label_ids)[:8]) or "none"
            raise ValueError(f"class {label!r} has no token in the run's tokenizer (its classes: {known}); "
                             "train the tokenizer on this data (leave out `model { tokenizer = ... }`)")
        token = UNK
    return Tokens([token][: attrs.get("max_length") or 1])
