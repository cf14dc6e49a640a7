"""Lowering: a checked task -> TaskIR (one flat Program per alternative template).

Everything the runtime needs is resolved here, once: preprocessor parameters (table
defaults, model settings, slot attributes), OFASys' fusion of adjacent token slots and
its automatic BOS/EOS, which decoder tokens carry loss, the forced prefix, the closed-set
constraint, the loss, the generator with its settings, and the postprocessor."""
from __future__ import annotations

from .check_template import target_output
from .ir import Op, Program, TaskIR, verify
from .modalities import MODALITIES
from .syntax import Marker, Text
from .typed import CheckedTask, Segment, TypedRepeat, TypedSlot, TypedTemplate, segments, slots_of

# slot attributes that shape the token group rather than one slot's preprocessing
_GROUP_ATTRS = {"no_loss", "closed_set", "disable_auto_boseos"}
_SPEECH_FEATURES = ("sample_rate", "n_mels", "n_fft", "hop_length", "f_min", "f_max", "n_frames_per_step")
_BOX_ONLY = (("min_len", 4), ("max_len", 4))
_METRIC_BY_OUTPUT = {"text": "exact_match", "box": "iou_acc", "box_text": "map", "image": "psnr", "waveform": "mcd",
                     "motion": "mpjpe"}


def lower_task(task: CheckedTask, model: tuple = (), image_tokenizer: tuple = ()) -> TaskIR:
    """`model`, `image_tokenizer`: the file's blocks (key, value) pairs; preprocessors whose
    parameters follow a setting read them (`Preprocessor.settings`: `size` <- `image_size`,
    the image codes' `grid` <- `image_tokenizer.grid`)."""
    settings = dict(model) | {f"image_tokenizer.{k}": v for k, v in image_tokenizer}
    programs = tuple(_Lowering(task, settings).program(t) for t in task.templates)
    for p in programs:
        problems = verify(p)
        if problems:  # a compiler bug, never a user mistake
            raise AssertionError(f"lowering produced invalid IR for task {task.name}: {problems}")
    first = programs[0]
    metric = task.setting("metric", "auto")
    if metric == "auto":
        constrained = first.only("loss").get("constrained", False)
        metric = "accuracy" if constrained else _METRIC_BY_OUTPUT.get(first.only("postprocess").name, "none")
    reads = first.of_kind("read")
    meta = (
        ("instruction", " ||| ".join(t.span.text if t.span is not None else "" for t in task.templates)),
        ("metric", metric),
        ("inputs", tuple(dict.fromkeys(o.get("column") for o in reads if o.get("side") == "encoder"))),
        # what the decoder is trained to produce, from its slots (not its reads: a column on both
        # sides is read only once); no_loss slots are forced prefix, not targets
        ("targets", tuple(dict.fromkeys(s.column for item in task.templates[0].decoder for s in slots_of(item)
                                        if not s.get("no_loss")))),
    ) + tuple((k, task.setting(k)) for k in ("references", "positive") if task.setting(k) is not None)
    return TaskIR(task.name, programs, meta)


class _Lowering:
    def __init__(self, task: CheckedTask, model: dict):
        self.task, self.model = task, model

    def program(self, t: TypedTemplate) -> Program:
        self.ops: list[Op] = []
        self.reads: dict[str, int] = {}
        self.prepared: dict[int, int] = {}  # id of a slot -> its preprocess op
        self.template = t
        enc = [self.segment(seg, "encoder") for seg in segments(t.encoder) if _has_content(seg)]
        self.encoder_ops = enc
        self.emit("encoder", "", enc, span=t.span)
        (seg,) = segments(t.decoder)
        adapted = self.segment(seg, "decoder")
        self.decoder(seg, adapted)
        return Program(self.task.name, tuple(self.ops))

    def emit(self, kind: str, name: str = "", args=(), attrs=(), span=None) -> int:
        i = len(self.ops)
        self.ops.append(Op(i, kind, name, tuple(args), tuple(attrs), span.location() if span is not None else None))
        return i

    # ---------------------------------------------------------------- inputs

    def read(self, s: TypedSlot) -> int:
        if s.column not in self.reads:
            self.reads[s.column] = self.emit("read", attrs=(
                ("column", s.column), ("modality", s.modality), ("side", s.side), ("repeated", s.repeated)),
                span=s.column_span or s.span)
        return self.reads[s.column]

    def preprocess(self, s: TypedSlot) -> int:
        if id(s) in self.prepared:
            return self.prepared[id(s)]
        pre = MODALITIES[s.modality].preprocessor(s.preprocess)
        decoder_side = s.side == "decoder" and bool(pre.decoder_params)
        params = dict(pre.decoder_params if decoder_side else pre.params)
        for param, setting in () if decoder_side else pre.settings:
            if self.model.get(setting) is not None:
                params[param] = self.model[setting]
        params.update((k, v) for k, v in s.attrs if k not in _GROUP_ATTRS)
        if s.modality == "MOTION" and self.task.setting("bvh_header"):
            params["bvh_header"] = self.task.setting("bvh_header")
        args = [self.read(s)]
        if s.modality == "BOX":  # a box is in pixels of the instruction's image: it follows the image's geometry
            args.append(self.preprocess(next(x for x in self.template.slots() if x.modality == "IMAGE")))
        self.prepared[id(s)] = op = self.emit("preprocess", s.preprocess, args, tuple(params.items()), s.span)
        return op

    def op_attrs(self, s: TypedSlot) -> dict:
        return dict(self.ops[self.preprocess(s)].attrs)

    def plain(self, item: Text) -> int:
        return self.emit("preprocess", "text", attrs=(("text", item.text),), span=item.span)

    def segment(self, seg: Segment, side: str) -> int:
        if seg.kind == "slot":
            s = seg.items[0]
            return self.emit("adapt", s.adaptor, [self.preprocess(s)], (("side", side),), s.span)
        members, loss = self.members(seg.items, side)
        first = next((i for i in seg.items if isinstance(i, TypedSlot)), None)
        auto = not (first is not None and first.get("disable_auto_boseos"))
        attrs = [("bos", auto), ("eos", auto)]
        limit = self.task.setting("max_source_length" if side == "encoder" else "max_target_length")
        if limit is not None:
            attrs.append(("max_length", limit))
        if side == "decoder":
            attrs.append(("loss", tuple(loss)))
        span = _span_of(seg)
        group = self.emit("group", "", members, attrs, span)
        return self.emit("adapt", "text", [group], (("side", side),), span)

    def members(self, items, side: str) -> tuple[list[int], list[bool]]:
        ids, loss = [], []
        plain_loss = bool(self.task.setting("decoder_plain_with_loss", False))
        for item in items:
            if isinstance(item, Marker):
                continue  # legacy: BOS/EOS are the group's own attributes
            if isinstance(item, Text):
                ids.append(self.plain(item))
                loss.append(plain_loss)
            elif isinstance(item, TypedRepeat):
                inner, _ = self.members(item.items, side)
                ids.append(self.emit("repeat", "", inner, span=item.span))
                loss.append(True)
            else:
                ids.append(self.preprocess(item))
                loss.append(not item.get("no_loss"))
        return ids, loss

    # ---------------------------------------------------------------- target

    def _phone_ctc_input(self, seg: Segment) -> int | None:
        """A text_phone target's CTC input: the adapted AUDIO encoder segment (the first, if
        several; the checker made sure there is one)."""
        if not any(s.preprocess == "text_phone" for s in seg.data_slots()):
            return None
        return next((op for op in self.encoder_ops
                     if self.ops[op].kind == "adapt" and self.ops[self.ops[op].args[0]].kind == "preprocess"
                     and self.ops[self.ops[op].args[0]].name == "audio"), None)

    def decoder(self, seg: Segment, adapted: int) -> None:
        if seg.kind == "slot":
            s = seg.items[0]
            target = MODALITIES[s.modality].adaptor(s.adaptor).target
            output = target.postprocess
        else:
            target = MODALITIES["TEXT"].adaptor("text").target
            output = target_output(seg)
        span = _span_of(seg)
        tgt = self.emit("target", target.head, [adapted], span=span)
        # a closed set: `closed_set`, or a category slot (its answers are its classes, one token each)
        closed = seg.kind == "tokens" and any(s.get("closed_set") or s.preprocess == "category"
                                              for s in seg.data_slots())
        loss_attrs = [("weight", self.task.setting("weight", 1.0))]
        loss, loss_args = target.loss, [tgt]
        if target.loss == "label_smoothed_ce" and self.task.setting("scst", False):  # OFA's second captioning
            limits = dict(target.generate_defaults) | dict(self.task.generate)    # stage (the checker allowed it)
            loss = "scst"
            loss_attrs += [("samples", self.task.setting("scst_samples", 5)), ("max_len", limits["max_len"])]
        elif target.loss == "label_smoothed_ce":
            loss_attrs = [("eps", self.task.setting("label_smoothing", 0.1))] + loss_attrs + [("constrained", closed)]
            audio = self._phone_ctc_input(seg)
            if audio is not None:  # text_phone: OFASys' ASR loss, the decoder's CE and the encoder's CTC
                loss, loss_args = "speech_to_text", [tgt, audio]
                loss_attrs += [("ce_weight", 1.0), ("ctc_weight", self.task.setting("ctc_weight", 1.0))]
        elif target.loss == "tacotron2":  # one positive stop frame per utterance: weigh it up (ESPnet: 5)
            loss_attrs += [("bce_pos_weight", 5.0), ("guided_attention", 1.0)]  # and align near the diagonal
        elif target.loss == "diffusion":
            loss_attrs += [("weighting", self.task.setting("diffusion_weighting", "snr")),
                           ("drop_prompt", self.task.setting("drop_prompt", 0.1))]
        self.emit("loss", loss, loss_args, loss_attrs, span)
        gen = dict(target.generate_defaults)
        if output == "box":
            gen.update(_BOX_ONLY)
        if closed:
            gen["beam"] = 1 if "beam" not in dict(self.task.generate) else gen["beam"]
        gen.update(self.task.generate)
        if target.head == "codes":  # an image is exactly its grid of codes
            codes = self.op_attrs(seg.items[0])
            gen["min_len"] = gen["max_len"] = codes.get("length") or codes["grid"] ** 2
        gen["constraint"] = "trie" if closed else "none"
        if closed:  # candidates: the task's `answers`, or (empty) the targets seen in training
            gen["answers"] = tuple(self.task.setting("answers", ()))
        generated = self.emit("generate", target.generator, [tgt], tuple(gen.items()), span)
        post = []
        if output in ("box", "box_text"):
            image = next(s for s in self.template.slots() if s.modality == "IMAGE")
            post += [("bins", self.model.get("box_bins", 1000)), ("image", image.column)]
        elif output == "image":
            codes = self.op_attrs(seg.items[0])
            post += [("grid", codes["grid"]), ("size", codes["size"]), ("codes", codes["codes"])]
        elif output == "waveform":  # the vocoder inverts the target's features
            frames = self.op_attrs(seg.items[0])
            post += [(k, frames[k]) for k in _SPEECH_FEATURES]
        self.emit("postprocess", output, [generated], tuple(post), span)


def _has_content(seg: Segment) -> bool:
    """False for a token group of legacy markers alone (`<BOS> -> ...`): it encodes nothing."""
    return any(not isinstance(item, Marker) for item in seg.items)


def _span_of(seg: Segment):
    spans = [i.span for i in seg.items if getattr(i, "span", None) is not None]
    return spans[0].to(spans[-1]) if spans else None
