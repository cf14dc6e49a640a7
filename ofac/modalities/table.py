"""The shapes of the modality table.  Passes read these; they never branch on a modality name."""
from __future__ import annotations

from dataclasses import dataclass, field

ENC = frozenset({"encoder"})
DEC = frozenset({"decoder"})
BOTH = ENC | DEC


@dataclass(frozen=True)
class SlotAttr:
    """One slot attribute: `closed_set` (flag) or `mask_ratio=0.3` (typed value)."""

    name: str
    kind: str  # flag | int | float | name
    doc: str
    sides: frozenset = BOTH
    default: object = None
    lo: float | None = None  # inclusive bounds
    hi: float | None = None
    hi_open: bool = False  # hi is exclusive
    preprocess: tuple[str, ...] = ()  # only meaningful with these preprocessors (empty: any)
    deprecated: str = ""  # a warning to give, the attribute is otherwise ignored
    lowered: bool = True  # False: checked but not carried into the IR (e.g. preprocess=)

    def range_text(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        hi = ")" if self.hi_open else "]"
        return f"[{self.lo if self.lo is not None else '-inf'}, {self.hi if self.hi is not None else 'inf'}{hi}"


@dataclass(frozen=True)
class Preprocessor:
    """A registered `preprocess=` name; `params` are its defaults, resolved into the IR."""

    name: str
    doc: str
    sides: frozenset = BOTH
    params: tuple[tuple[str, object], ...] = ()
    # settings (ofac.settings keys of the model block) that override params: param -> key
    settings: tuple[tuple[str, str], ...] = ()
    # the params on the decoder side, where they differ (AUDIO: the speech target's log-mel
    # frames, not the encoder's fbank); the settings apply to the encoder side only then
    decoder_params: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Target:
    """What the decoder does with a slot of this kind: the output head that produces it (an IR
    `target.<head>` op), how it is trained and generated, and what its answers are."""

    head: str
    loss: str
    generator: str
    postprocess: str
    generate_defaults: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Adaptor:
    """A registered `adaptor=` name.  `target` is set when it can produce decoder output;
    `takes` says what its encoder input is: `tokens` (ids), `pixels` [N, 3, S, S], `frames`
    [N, T, n_mels] or `clips` [N, F, 3, S, S] (tokens and frames come with their lengths)."""

    name: str
    doc: str
    sides: frozenset = BOTH
    target: Target | None = None
    takes: str = "tokens"
    # the preprocessor whose output it reads (the slot's default; another is an error), or any
    preprocess: str = ""

    @property
    def variable_length(self) -> bool:
        return self.takes in ("tokens", "frames", "motion")


@dataclass(frozen=True)
class Modality:
    name: str
    doc: str
    attrs: tuple[SlotAttr, ...]
    preprocessors: tuple[Preprocessor, ...]  # the first is the default
    adaptors: tuple[Adaptor, ...]
    default_adaptor: dict = field(default_factory=dict)  # side -> adaptor name (absent: none)
    # Token-like slots (TEXT, BOX, PHONE, STRUCT) fuse with adjacent plain text into one
    # token sequence, as OFASys groups them; the rest stay slots of their own.
    token_like: bool = False
    # As a member of a fused token group, what kind of output it makes (text, box) or
    # None when it cannot be a generation target on its own.
    token_output: str | None = None
    order: int = 0

    def attr(self, name: str) -> SlotAttr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    def preprocessor(self, name: str | None) -> Preprocessor | None:
        if name is None:
            return self.preprocessors[0]
        return next((p for p in self.preprocessors if p.name == name), None)

    def adaptor(self, name: str) -> Adaptor | None:
        return next((a for a in self.adaptors if a.name == name), None)


# Attributes every modality accepts.
COMMON_ATTRS = (
    SlotAttr("preprocess", "name", "select a registered preprocessor instead of the modality default",
             lowered=False),
    SlotAttr("adaptor", "name", "select a registered adaptor instead of the modality default", lowered=False),
    SlotAttr("add_bos", "flag", "legacy: BOS is added automatically",
             deprecated="`add_bos` is ignored: BOS/EOS are added automatically around each token group"),
    SlotAttr("add_eos", "flag", "legacy: EOS is added automatically",
             deprecated="`add_eos` is ignored: BOS/EOS are added automatically around each token group"),
)

# Attributes of token-like modalities (they become part of a fused token group).
TOKEN_ATTRS = (
    SlotAttr("max_length", "int", "truncate this slot's tokens to n (before BOS/EOS)", lo=1),
    SlotAttr("uncased", "flag", "lower-case the text before tokenizing"),
    SlotAttr("no_punctuation", "flag", "strip ASCII punctuation before tokenizing"),
    SlotAttr("disable_auto_boseos", "flag", "do not wrap this token group with BOS/EOS"),
    SlotAttr("no_loss", "flag", "teacher-forced without loss; a leading no-loss part is a forced prefix "
             "at inference", sides=DEC),
)
