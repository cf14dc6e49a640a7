"""Generation: the implementations of `generate.<name>` ops.  The token search (`search.py`:
beam search, greedy, sampling, over any array backend; `eager.py` runs it on torch tensors) is
what `generate.beam` and `generate.sample` configure; `speech.py` is `generate.speech`, the
frames head's loop on numpy (`eager.TorchSpeaker` runs it on the eager model); `diffusion.py`
is `generate.diffusion`, the motion head's DDIM sampler on numpy.  No torch here."""
from __future__ import annotations

from ofac.ir import Op

from ..registry import Registry, attributes
from .search import GenerateConfig, Trie

GENERATORS = Registry("generate")
_SEARCH = ("beam", "max_len", "min_len", "len_penalty", "no_repeat_ngram_size", "temperature", "top_k", "top_p",
           "constraint", "answers")
GENERATORS.add("beam", GenerateConfig, attrs=_SEARCH, sampling=False)
GENERATORS.add("sample", GenerateConfig, attrs=_SEARCH, sampling=True)
GENERATORS.add("speech", "speech", attrs=("max_len", "eos_threshold", "constraint"))  # generate/speech.py
GENERATORS.add("diffusion", "diffusion", attrs=("steps", "guidance", "length", "constraint"))  # generate/diffusion.py
_DIFFUSION_ONLY = ("steps", "guidance", "length")


def generation(op: Op, trie: Trie | None = None, **overrides) -> GenerateConfig:
    """How a `generate.*` op searches; `overrides` (the caller's settings, None: the op's) win."""
    impl = GENERATORS.check(op)
    if impl.run == "speech":  # the frames head's loop, not the token search
        from .speech import SpeechConfig

        return SpeechConfig.from_attrs(attributes(op), trie, **overrides)
    if impl.run == "diffusion":  # the motion head's sampler
        from .diffusion import DiffusionConfig

        return DiffusionConfig.from_attrs(attributes(op), trie, **overrides)
    for key in _DIFFUSION_ONLY:  # a caller's diffusion settings mean nothing to the token search
        overrides.pop(key, None)
    overrides.setdefault("sampling", None)
    if overrides["sampling"] is None:
        overrides["sampling"] = impl.extra["sampling"]
    return GenerateConfig.from_attrs(attributes(op), trie, **overrides)


def closed_set_attrs(op: Op) -> tuple[bool, tuple[str, ...]]:
    """(whether generation is constrained to a closed set of answers, the answers given)."""
    attrs = attributes(op)
    return attrs.get("constraint") == "trie", tuple(attrs.get("answers") or ())
