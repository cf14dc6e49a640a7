"""The run's vocabulary: a byte-level BPE tokenizer trained on the task data (Hugging Face
`tokenizers`), with reserved tokens for box bins, image codes, phones and class labels (one
token per class of a `preprocess=category` slot).

Layout: the five specials first (ids 0-4), then the reserved ranges, then BPE merges.  The
layout is recovered from `tokenizer.json` alone, so a run directory needs nothing else."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BOS, PAD, EOS, UNK, MASK = range(5)
BLANK_PHONE = "<blank>"  # the CTC blank of text_phone targets: a phone token no phonemizer writes
_RESERVED = re.compile(r"^<(bin|code|phone|label)_(.+)>$", re.S)


@dataclass(frozen=True)
class Reserved:
    """Which reserved tokens a run needs (`data.corpus.reserved_for` works it out from the IR of
    its tasks, its phone data and its category labels)."""

    bins: int = 0
    codes: int = 0
    phones: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def tokens(self) -> list[str]:
        # the CTC blank first among the phones: the phone tokens' range starts with it
        phones = ([BLANK_PHONE] if BLANK_PHONE in self.phones else []) + [p for p in self.phones if p != BLANK_PHONE]
        return ([f"<bin_{i}>" for i in range(self.bins)] + [f"<code_{i}>" for i in range(self.codes)]
                + [f"<phone_{p}>" for p in phones] + [f"<label_{c}>" for c in self.labels])


class Vocab:
    def __init__(self, tokenizer):
        self.tok = tokenizer
        added = {i: t.content for i, t in tokenizer.get_added_tokens_decoder().items()}
        for i, s in enumerate(SPECIALS):
            if added.get(i) != s:
                raise ValueError(f"not an ofac tokenizer: id {i} is {added.get(i)!r}, expected {s!r}")
        self.bin_ids: list[int] = []
        self.code_ids: list[int] = []
        self.phone_ids: dict[str, int] = {}
        self.label_ids: dict[str, int] = {}  # a category label -> its one token
        for i, content in sorted(added.items()):
            m = _RESERVED.match(content)
            if m and m.group(1) == "bin":
                self.bin_ids.append(i)
            elif m and m.group(1) == "code":
                self.code_ids.append(i)
            elif m and m.group(1) == "phone":
                self.phone_ids[m.group(2)] = i
            elif m:
                self.label_ids[m.group(2)] = i
        self.reserved_ids = frozenset(added)  # never produced by BPE, skipped when decoding text
        self.label_of = {i: c for c, i in self.label_ids.items()}  # ... but a label decodes to itself
        self.bin_index = {t: k for k, t in enumerate(self.bin_ids)}

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text piece, with a leading space as OFASys encodes `' ' + text.strip()`."""
        return self.tok.encode(" " + text.strip(), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch([" " + t.strip() for t in texts], add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids: BPE pieces decoded, a category label as its text, other reserved
        tokens (specials, box bins, codes, phones) skipped."""
        pieces, run = [], []
        for i in ids:
            if i in self.label_of:
                pieces += [self.tok.decode(run).strip(), self.label_of[i]]
                run = []
            elif i not in self.reserved_ids:
                run.append(i)
        pieces.append(self.tok.decode(run).strip())
        return " ".join(p for p in pieces if p)

    def bin(self, k: int) -> int:
        return self.bin_ids[k]

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))


def train_vocab(texts: Iterable[str], vocab_size: int = 8000, reserved: Reserved = Reserved()) -> Vocab:
    """Train byte-level BPE on `texts`; the reserved tokens are added as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIALS) + reserved.tokens()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + len(specials), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((" " + t.strip() for t in texts), trainer)
    return Vocab(tok)
