"""Type checking of instructions: every slot gets a modality, side, column, preprocessor,
adaptor and typed attributes, all read from the modality table (ofac.modalities)."""
from __future__ import annotations

from dataclasses import replace

from . import syntax as ast
from .check_template import (
    SIDES,
    check_box_needs_image,
    check_decoder,
    check_phones_need_audio,
    consistent_columns,
    same_structure,
)
from .diagnostics import Diagnostics, Note
from .modalities import MODALITIES, MODALITY_NAMES
from .names import closest
from .typed import TypedRepeat, TypedSlot, TypedTemplate


def check_instruction(instr: ast.Instruction, diags: Diagnostics) -> tuple[TypedTemplate, ...] | None:
    """Check every template of an instruction; None when any of them has an error."""
    before = diags.error_count
    templates = [t for t in (_template(t, diags) for t in instr.templates) if t is not None]
    if diags.error_count > before:
        return None
    same_structure(templates, diags)
    consistent_columns(templates, diags)
    if diags.error_count > before:
        return None
    return tuple(templates)


def _template(t: ast.Template, diags: Diagnostics) -> TypedTemplate | None:
    if len(t.sides) == 1:
        diags.error("E0006", "missing `->` between the encoder and the decoder side", t.span,
                    label="no `->` in this instruction",
                    help="write `encoder input -> decoder target`, e.g. `[IMAGE:img] what is it? -> [TEXT:cap]`")
        return None
    counter = _Positions()
    if len(t.sides) > 2:
        for arrow in t.arrow_spans[1:]:
            diags.error("E0007", "more than one `->` in an instruction", arrow, label="second `->`",
                        notes=(Note("the first `->` is here", t.arrow_spans[0]),),
                        help="an instruction has exactly one `->`; plain text cannot contain `->`")
        for i, side in enumerate(t.sides):  # still report every slot mistake in one run
            _items(side, SIDES[min(i, 1)], counter, diags)
        return None
    enc = _items(t.encoder, "encoder", counter, diags)
    dec = _items(t.decoder, "decoder", counter, diags)
    if enc is None or dec is None:
        return None
    typed = TypedTemplate(enc, dec, span=t.span)
    check_decoder(typed, t, diags)
    check_box_needs_image(typed, diags)
    check_phones_need_audio(typed, diags)
    return typed


class _Positions:
    """OFASys names an unnamed slot by its position among the instruction's slots, where
    each run of plain text (legacy markers included) counts as one slot."""

    def __init__(self):
        self.n = 0
        self.in_text = False

    def text(self) -> None:
        if not self.in_text:
            self.n += 1
            self.in_text = True

    def slot(self) -> int:
        self.in_text = False
        self.n += 1
        return self.n - 1


def _items(items, side: str, pos: _Positions, diags: Diagnostics, repeated: bool = False):
    out, ok = [], True
    for item in items:
        if isinstance(item, ast.Text):
            pos.text()
            out.append(item)
        elif isinstance(item, ast.Marker):
            pos.text()
            diags.warning("W0101", f"`<{item.kind}>` is a legacy marker", item.span,
                          label="treated as automatic BOS/EOS",
                          help="remove it: BOS/EOS are added automatically around each token group")
            out.append(item)
        elif isinstance(item, ast.Repeat):
            typed = _repeat(item, side, pos, diags)
            ok &= typed is not None
            out.append(typed)
        else:
            typed = _slot(item, side, pos.slot(), diags, repeated)
            ok &= typed is not None
            out.append(typed)
    return tuple(out) if ok else None


def _repeat(rep: ast.Repeat, side: str, pos: _Positions, diags: Diagnostics):
    if side == "encoder":
        diags.error("E0027", "repetition groups are not supported on the encoder side yet", rep.span,
                    label="repeated encoder input",
                    help="use a repetition group for variable-length targets, e.g. `-> ([BOX:boxes] [TEXT:labels])*`")
        return None
    inner = _items(rep.items, side, pos, diags, repeated=True)
    if inner is None:
        return None
    slots = [s for s in inner if isinstance(s, TypedSlot)]
    if not slots:
        diags.error("E0027", "a repetition group needs at least one slot", rep.span,
                    label="nothing to repeat", help="put the repeated slots inside: `([BOX:boxes] [TEXT:labels])*`")
        return None
    for s in slots:
        if not s.token_like:
            diags.error("E0027", f"{s.modality} cannot be repeated", s.span, label="not a token slot",
                        help="a repetition group may hold TEXT, BOX, PHONE and STRUCT slots and plain text")
            return None
    return TypedRepeat(inner, span=rep.span)


def _slot(slot: ast.Slot, side: str, position: int, diags: Diagnostics, repeated: bool):
    slot = _fix_misspelled_preprocess(slot, diags)
    modality = _modality(slot, diags)
    if modality is None:
        return None
    if slot.column == "":
        diags.error("E0009", "empty column name", slot.column_span, label="a column name goes here",
                    help=f"name the data column, e.g. `[{modality.name}:my_column]`, or drop the `:`")
        return None
    before = diags.error_count
    attrs = _attrs(slot, modality, side, diags)
    if diags.error_count > before:
        return None
    preprocess = _choice(slot, modality, side, "preprocess", diags)
    adaptor = _choice(slot, modality, side, "adaptor", diags)
    if preprocess is None or adaptor is None:
        return None
    preprocess = _paired(slot, modality, preprocess, adaptor, diags)
    if preprocess is None:
        return None
    if not _attr_preprocess_ok(slot, modality, preprocess, diags):
        return None
    return TypedSlot(modality.name, side, slot.column or str(position), preprocess, adaptor, attrs,
                     repeated, span=slot.span, column_span=slot.column_span)


def _paired(slot: ast.Slot, modality, preprocess: str, adaptor: str, diags: Diagnostics) -> str | None:
    """An adaptor that reads one preprocessor's output (`image_vqgan` reads image codes) takes
    it by default; a slot that names another gets E0018."""
    reads = modality.adaptor(adaptor).preprocess
    if not reads or reads == preprocess:
        return preprocess
    attr = slot.attr("preprocess")
    if attr is None or not attr.value:
        return reads
    diags.error("E0018", f"adaptor `{adaptor}` reads `preprocess={reads}`, not `{preprocess}`", attr.value_span,
                label="does not fit the adaptor", help=f"write `preprocess={reads}` or leave `preprocess=` out")
    return None


def _fix_misspelled_preprocess(slot: ast.Slot, diags: Diagnostics) -> ast.Slot:
    """OFASys' own docs write `preprocessor=image_vqgan`; read it as `preprocess=`."""
    attrs = []
    for a in slot.attrs:
        if a.key == "preprocessor" and slot.attr("preprocess") is None:
            diags.warning("W0107", "`preprocessor=` is read as `preprocess=`", a.span, label="misspelled",
                          help="write `preprocess=`; OFASys silently ignored this attribute")
            a = replace(a, key="preprocess")
        attrs.append(a)
    return replace(slot, attrs=tuple(attrs))


def _modality(slot: ast.Slot, diags: Diagnostics):
    name = slot.modality
    if name in MODALITIES:
        return MODALITIES[name]
    if name.upper() in MODALITIES:
        diags.error("E0004", f"modality names are uppercase: `{name}`", slot.modality_span,
                    label=f"write `{name.upper()}`", help=f"replace `{name}` with `{name.upper()}`")
    elif name.upper() == "CATEGORY":
        diags.error("E0005", "`CATEGORY` is not a modality", slot.modality_span, label="not a modality",
                    help="classify with `[TEXT:label,closed_set]`, or `[TEXT:label,preprocess=category]` for "
                         "a label vocabulary")
    else:
        guess = closest(name, MODALITY_NAMES)
        diags.error("E0005", f"unknown modality `{name}`", slot.modality_span, label="not a modality",
                    help=f"did you mean `{guess}`?" if guess else "the modalities are " + ", ".join(MODALITY_NAMES))
    return None


def _attrs(slot: ast.Slot, modality, side: str, diags: Diagnostics) -> tuple:
    seen: dict[str, ast.Attr] = {}
    typed = []
    for attr in slot.attrs:
        declared = modality.attr(attr.key)
        if declared is None:
            _unknown_attr(attr, modality, diags)
            continue
        if attr.key in seen:
            diags.duplicate("E0014", f"attribute `{attr.key}` given twice", attr.span, seen[attr.key].span,
                            "first given here")
            continue
        seen[attr.key] = attr
        value = _attr_value(attr, declared, diags)
        if value is _BAD:
            continue
        if side not in declared.sides:
            other = "encoder input" if "encoder" in declared.sides else "decoder target"
            article = "an" if side == "encoder" else "a"
            diags.error("E0013", f"`{attr.key}` does not apply to {article} {side} slot", attr.span,
                        label=f"on the {side} side", help=f"`{attr.key}` applies to {_a(other)} only: {declared.doc}")
            continue
        if declared.deprecated:
            diags.warning("W0102", declared.deprecated, attr.span, label="ignored", help=f"remove `{attr.key}`")
            continue
        if declared.lowered:
            typed.append((attr.key, value))
    return tuple(typed)


_BAD = object()


def _attr_value(attr: ast.Attr, declared, diags: Diagnostics):
    if declared.kind == "flag":
        if attr.value is not None:
            diags.error("E0011", f"`{attr.key}` is a flag and takes no value", attr.value_span or attr.span,
                        label="remove this value", help=f"write just `{attr.key}`")
            return _BAD
        return True
    if not attr.value:
        example = {"int": "8", "float": "0.3", "name": "NAME"}[declared.kind]
        diags.error("E0011", f"`{attr.key}` needs a value", attr.span, label="no value",
                    help=f"write `{attr.key}={example}`: {declared.doc}")
        return _BAD
    if declared.kind == "name":
        return attr.value
    try:
        value = int(attr.value) if declared.kind == "int" else float(attr.value)
    except ValueError:
        kind = "an integer" if declared.kind == "int" else "a number"
        diags.error("E0011", f"`{attr.key}` expects {kind}, found `{attr.value}`", attr.value_span,
                    label=f"not {kind}", help=f"`{attr.key}`: {declared.doc}")
        return _BAD
    below = declared.lo is not None and value < declared.lo
    above = declared.hi is not None and (value >= declared.hi if declared.hi_open else value > declared.hi)
    if below or above:
        diags.error("E0012", f"`{attr.key}={attr.value}` is out of range", attr.value_span,
                    label=f"must be in {declared.range_text()}", help=f"`{attr.key}`: {declared.doc}")
        return _BAD
    return value


def _unknown_attr(attr: ast.Attr, modality, diags: Diagnostics) -> None:
    names = [a.name for a in modality.attrs]
    guess = closest(attr.key, names)
    owners = [m.name for m in MODALITIES.values() if m.attr(attr.key)]
    if attr.key == "preprocessor":
        help_ = "the attribute is `preprocess=` (OFASys' docs misspell it)"
    elif guess:
        help_ = f"did you mean `{guess}`?"
    elif owners:
        help_ = f"`{attr.key}` is an attribute of {', '.join(owners)}"
    else:
        help_ = f"{modality.name} accepts: " + ", ".join(names)
    diags.error("E0010", f"unknown attribute `{attr.key}` for {modality.name}", attr.span,
                label="unknown attribute", help=help_)


def _choice(slot: ast.Slot, modality, side: str, what: str, diags: Diagnostics):
    attr = slot.attr(what)
    if attr is None or not attr.value:
        if what == "preprocess":
            return modality.preprocessors[0].name
        default = modality.default_adaptor.get(side)
        if default is None:
            return _no_default_adaptor(slot, modality, side, diags)
        return default
    options = modality.preprocessors if what == "preprocess" else modality.adaptors
    noun = "preprocessor" if what == "preprocess" else "adaptor"
    found = next((o for o in options if o.name == attr.value), None)
    code = "E0015" if what == "preprocess" else "E0016"
    if found is None:
        owners = [m.name for m in MODALITIES.values()
                  for o in (m.preprocessors if what == "preprocess" else m.adaptors) if o.name == attr.value]
        guess = closest(attr.value, [o.name for o in options])
        if owners:
            help_ = f"`{attr.value}` is {_a(noun)} of {', '.join(owners)}, not of {modality.name}"
        else:
            help_ = (f"did you mean `{guess}`? " if guess else "") + f"{modality.name} {noun}s: " + \
                ", ".join(o.name for o in options)
        diags.error(code, f"unknown {noun} `{attr.value}` for {modality.name}", attr.value_span,
                    label=f"not {_a(modality.name)} {noun}", help=help_)
        return None
    if side not in found.sides:
        only = next(iter(found.sides))
        diags.error("E0017", f"{noun} `{found.name}` cannot be used on "
                    f"the {side} side", attr.value_span, label=f"{only} only",
                    help=f"`{found.name}` ({found.doc}) works on the {only} side only")
        return None
    return found.name


def _a(word: str) -> str:
    return ("an " if word[0].upper() in "AEIOU" else "a ") + word


def _no_default_adaptor(slot: ast.Slot, modality, side: str, diags: Diagnostics):
    makers = [a.name for a in modality.adaptors if side in a.sides]
    help_ = (f"choose one with `adaptor=`: {', '.join(makers)}" if makers
             else f"{modality.name} can only be an encoder input")
    if side == "decoder":
        diags.error("E0022", f"{modality.name} cannot be generated by the default adaptor", slot.span,
                    label="decoder target without a generating adaptor",
                    help=help_ if makers else f"{modality.name} cannot be a decoder target; "
                    "move it left of `->`")
    else:
        diags.error("E0022", f"{modality.name} has no encoder adaptor", slot.span, label="encoder input",
                    help=f"{modality.name} can only be a decoder target")
    return None


def _attr_preprocess_ok(slot: ast.Slot, modality, preprocess: str, diags: Diagnostics) -> bool:
    for attr in slot.attrs:
        declared = modality.attr(attr.key)
        if declared and declared.preprocess and preprocess not in declared.preprocess:
            diags.error("E0019", f"`{attr.key}` needs preprocess={' or '.join(declared.preprocess)}", attr.span,
                        label=f"not used by preprocess={preprocess}",
                        help=f"add `preprocess={declared.preprocess[0]}` or remove `{attr.key}`")
            return False
    return True


