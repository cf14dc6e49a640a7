"""Whole-template rules of the checker: one decoder target that can be generated, BOX
needs an IMAGE, the forced-prefix order, alternatives of one shape, one modality per column."""
from __future__ import annotations

from . import syntax as ast
from .diagnostics import Diagnostics, Note
from .modalities import MODALITIES
from .source import Span
from .typed import Segment, TypedRepeat, TypedSlot, TypedTemplate, segments

SIDES = ("encoder", "decoder")


def check_decoder(t: TypedTemplate, raw: ast.Template, diags: Diagnostics) -> None:
    segs = segments(t.decoder)
    data = [s for seg in segs for s in seg.data_slots()]
    arrow = raw.arrow_spans[0]
    if not data:
        diags.error("E0020", "the decoder side has no target slot", _side_span(raw, 1, arrow),
                    label="nothing to predict",
                    help="put the data column to predict right of `->`, e.g. `-> [TEXT:caption]`")
        return
    if len(segs) > 1:
        diags.error("E0021", "the decoder side must be a single target", _side_span(raw, 1, arrow),
                    label=f"{len(segs)} separate targets",
                    notes=tuple(Note(f"target {i + 1}: {seg.signature()}", _seg_span(seg))
                                for i, seg in enumerate(segs)),
                    help="text, BOX, PHONE and STRUCT slots fuse into one target; an IMAGE, AUDIO or MOTION "
                         "target must stand alone right of `->`")
        return
    seg = segs[0]
    if seg.kind == "tokens" and target_output(seg) is None:
        kinds = sorted({s.modality for s in data})
        diags.error("E0022", f"{' and '.join(kinds)} cannot be generated", _seg_span(seg),
                    label="no generator for this target",
                    help="a token target needs a TEXT or BOX slot; PHONE and STRUCT are encoder inputs")
        return
    _check_prefix(seg, diags)


def target_output(seg: Segment) -> str | None:
    """What a fused decoder token group produces: text, box, or box_text (boxes with labels)."""
    outputs = {MODALITIES[s.modality].token_output for s in seg.data_slots()}
    if "box" in outputs:
        return "box_text" if "text" in outputs or len(seg.data_slots()) > 1 else "box"
    return "text" if "text" in outputs else None


def _check_prefix(seg: Segment, diags: Diagnostics) -> None:
    seen_loss = False
    for item in seg.items:
        if isinstance(item, TypedSlot):
            if item.get("no_loss"):
                if seen_loss:
                    diags.warning("W0105", "a no-loss slot after a trained slot is not a forced prefix",
                                  item.span, label="teacher-forced, but not forced at inference",
                                  help="put no-loss parts first on the decoder side")
            else:
                seen_loss = True
        elif isinstance(item, TypedRepeat):
            seen_loss = True


def check_box_needs_image(t: TypedTemplate, diags: Diagnostics) -> None:
    slots = list(t.slots())
    if any(s.modality == "IMAGE" for s in slots):
        return
    for s in slots:
        if s.modality == "BOX":
            diags.error("E0025", "a BOX slot needs an IMAGE slot in the same instruction", s.span,
                        label="box of which image?",
                        help="boxes are pixel coordinates of an image: add `[IMAGE:column]` to the encoder side")
            return


def check_phones_need_audio(t: TypedTemplate, diags: Diagnostics) -> None:
    """`text_phone` trains the encoder's CTC over the phonemes of the target: on an AUDIO input."""
    slots = list(t.slots())
    if any(s.modality == "AUDIO" and s.side == "encoder" for s in slots):
        return
    for s in slots:
        if s.preprocess == "text_phone":
            diags.error("E0046", "a text_phone target needs an AUDIO input", s.span,
                        label="phonemes of which speech?",
                        help="text_phone adds a CTC loss over the encoder's audio states (speech recognition): "
                        "add `[AUDIO:column]` to the encoder side, or use preprocess=text")
            return


def same_structure(templates: list[TypedTemplate], diags: Diagnostics) -> None:
    """All alternatives of a task are batched together, so they must fuse alike."""
    def shape(t):
        return tuple(tuple(seg.signature() for seg in segments(side)) for side in (t.encoder, t.decoder))

    def describe(s):
        return "; ".join(f"{side}: {' + '.join(segs) or 'nothing'}" for side, segs in zip(SIDES, s))

    first = templates[0] if templates else None
    for other in templates[1:]:
        if shape(other) != shape(first):
            diags.error("E0028", "alternative templates of a task must have the same slot structure", other.span,
                        label=describe(shape(other)),
                        notes=(Note("the first template has " + describe(shape(first)), first.span),),
                        help="every `|||` alternative is batched with the others: give each the same "
                             "non-text slots in the same order")


def consistent_columns(templates: list[TypedTemplate], diags: Diagnostics) -> None:
    first: dict[str, TypedSlot] = {}
    for t in templates:
        for s in t.slots():
            prev = first.setdefault(s.column, s)
            if prev.modality != s.modality:
                diags.error("E0024", f"column `{s.column}` is read as {prev.modality} and as {s.modality}",
                            s.column_span or s.span, label=f"read as {s.modality} here",
                            notes=(Note(f"read as {prev.modality} here", prev.column_span or prev.span),),
                            help="a column holds one kind of data: use one modality, or two columns")
                return


def _side_span(raw: ast.Template, index: int, arrow: Span) -> Span:
    items = raw.sides[index]
    if items:
        return items[0].span.to(items[-1].span)
    return arrow


def _seg_span(seg: Segment) -> Span:
    spans = [i.span for i in seg.items if getattr(i, "span", None) is not None]
    return spans[0].to(spans[-1])
