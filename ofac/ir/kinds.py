"""The op vocabulary: one spec per op kind, which the verifier checks on every program.

A program reads columns, preprocesses them, fuses token pieces into groups, adapts every
segment to the model width, concatenates the encoder's segments, and names one output head
whose loss, generator and postprocessor follow:

    read -> preprocess -> [repeat] -> [group] -> adapt -> encoder        (encoder side)
                                                        -> target.<head> -> loss.<name>
                                                                         -> generate.<name> -> postprocess.<name>

Kinds marked `named` take the name of a registered implementation (`preprocess.image`,
`adapt.image_patch`, `target.tokens`, `loss.label_smoothed_ce`, ...); the attributes their
implementations take are declared by the runtime's registries, which check them when they
load a program.  The attributes listed here are the ones every op of the kind has."""
from __future__ import annotations

from dataclasses import dataclass

# JSON-able attribute types: int is not accepted where bool is meant, nor bool for int; an int
# is a float (JSON writes 1.0 as 1 in some producers)
TYPES = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, tuple),
}


@dataclass(frozen=True)
class OpAttr:
    name: str
    type: str  # a key of TYPES
    required: bool = True
    choices: tuple = ()  # allowed values, when closed


@dataclass(frozen=True)
class OpKind:
    kind: str
    doc: str
    arity: tuple[int, int | None]  # (fewest, most) arguments; None: no upper bound
    arg_kinds: tuple[str, ...] = ()  # the kinds its arguments may be (empty: takes none)
    attrs: tuple[OpAttr, ...] = ()
    named: bool = False  # takes the name of a registered implementation
    unique: bool = False  # exactly one per program
    sink: bool = False  # its result need not be used (the program's outputs)
    open_attrs: bool = False  # named implementations add attributes of their own
    first: str = ""  # the kind its first argument must be, where arg_kinds allows more

    def attr(self, name: str) -> OpAttr | None:
        return next((a for a in self.attrs if a.name == name), None)


SIDES = ("encoder", "decoder")

OP_KINDS: dict[str, OpKind] = {k.kind: k for k in (
    OpKind("read", "a data column of the row", (0, 0),
           attrs=(OpAttr("column", "str"), OpAttr("modality", "str"), OpAttr("side", "str", choices=SIDES),
                  OpAttr("repeated", "bool"))),
    OpKind("preprocess", "a column's value (or constant text) made into what an adaptor takes; a box "
           "takes its image's preprocessing as second argument, whose geometry it follows", (0, 2),
           ("read", "preprocess"), named=True, open_attrs=True),
    OpKind("repeat", "a repetition group `( ... )*`: one element of each list argument per repetition", (1, None),
           ("preprocess", "repeat")),
    OpKind("group", "token pieces fused into one sequence, as OFASys groups adjacent token slots", (1, None),
           ("preprocess", "repeat"),
           attrs=(OpAttr("bos", "bool"), OpAttr("eos", "bool"), OpAttr("max_length", "int", required=False),
                  OpAttr("loss", "list", required=False))),
    OpKind("adapt", "a segment made into model-width vectors by a registered adaptor", (1, 1),
           ("preprocess", "group"), attrs=(OpAttr("side", "str", choices=SIDES),), named=True),
    OpKind("encoder", "the encoder's input: its segments in order", (0, None), ("adapt",), unique=True, sink=True),
    OpKind("target", "what the decoder produces, by a registered output head", (1, 1), ("adapt",), named=True,
           unique=True, open_attrs=True),
    OpKind("loss", "how the head's target is trained (a second argument: an encoder segment the loss also "
           "reads, as the CTC of speech recognition reads the audio)", (1, 2), ("target", "adapt"),
           attrs=(OpAttr("weight", "float"),),
           named=True, unique=True, sink=True, open_attrs=True, first="target"),
    OpKind("generate", "how the head's target is generated at inference", (1, 1), ("target",), named=True,
           unique=True, open_attrs=True),
    OpKind("postprocess", "generated output turned into an answer", (1, 1), ("generate",), named=True,
           unique=True, sink=True, open_attrs=True),
)}
