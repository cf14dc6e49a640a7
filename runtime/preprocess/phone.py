"""PHONE: space-separated phone symbols -> phone tokens; `mask_ratio` masks phones at train time."""
from __future__ import annotations

from ..vocab.tokenizer import MASK, UNK
from .base import Context, Tokens, preprocessors

REGISTRY = preprocessors()


def phones_of(value) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(p) for p in value]
    raise ValueError(f"phones are a space-separated string or a list; found {type(value).__name__}")


@REGISTRY.register("phone", attrs=("max_length", "mask_ratio"),
                   symbols=("phones", lambda value, attrs: phones_of(value)))
def phone(value, attrs: dict, ctx: Context) -> Tokens:
    ids = [ctx.vocab.phone_ids.get(p, UNK) for p in phones_of(value)]
    if attrs.get("max_length"):
        ids = ids[: attrs["max_length"]]
    inputs = None
    if ctx.training and attrs.get("mask_ratio"):
        flips = ctx.rng.random(len(ids)) < attrs["mask_ratio"]
        inputs = [MASK if f else t for t, f in zip(ids, flips)]
    return Tokens(ids, inputs)

