"""`ofac export`: ONNX graphs of a trained model, and the ONNX Runtime model that runs them.

The folder holds the encoder/decoder/decoder-with-past layout:

  encoder_<inputs>.onnx   the input adaptors and the encoder, one graph per sequence of input
                          adaptors the run's tasks use (e.g. `image_patch-text`); outputs the
                          memory, its additive mask (0 real / -inf padding) and each decoder
                          layer's cross-attention keys and values (computed once per source)
  decoder.onnx            the first decoder call: BOS and the forced prefix at once -> logits of
                          the last position and each layer's self-attention (k, v)
  decoder_with_past.onnx  one new position over the cached (k, v) -> logits, the grown cache
  decoder_codes.onnx, decoder_codes_with_past.onnx
                          the same two for the code head (image outputs), when the run has one
  tokenizers/image/       the image tokenizer's config and report, and image_decoder.onnx:
                          codes [N, g*g] -> uint8 images [N, S, S, 3]
  manifest.json           graphs with their input/output names and dynamic axes, opset, the
                          model config, which encoder serves which task, ofac version
  programs.json, tokenizer.json, answers.json, config.json   as in the run directory

Dynamic axes: batch, source length (and text lengths), prefix length, cache length.  Segments
of one example are concatenated padded (a text segment keeps its padding, masked out), which
the encoder's attention treats exactly as the compact sequence the PyTorch path builds.

The folder is answered without torch by `ofac.runtime.deploy` (ONNX Runtime + numpy: the same
IR executor, search and postprocessing as the PyTorch backend)."""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ofac import __version__
from ofac.modalities import ADAPTORS

from ..store.files import write_json
from .answer import OFASys
from .onnx import FORMAT, ExportError, decoder_graphs, encoder_graph, encoder_inputs, takes_lengths

__all__ = ["ExportError", "decoder_graphs", "encoder_inputs", "export"]

FILES = ("programs.json", "tokenizer.json", "answers.json", "config.json")


# ------------------------------------------------------------------------------ graphs

class _Encoder(nn.Module):
    """The segments of one example concatenated padded (a padded text segment stays masked),
    which the encoder's attention treats as the compact sequence `EncoderDecoder.encode` builds."""

    def __init__(self, model, adaptors: tuple[str, ...]):
        super().__init__()
        self.m, self.adaptors = model, adaptors

    def forward(self, inputs: tuple):
        m, xs, masks, k = self.m, [], [], 0
        for name in self.adaptors:
            if takes_lengths(name):
                x, n = m.embed_input(name, inputs[k], inputs[k + 1])
                k += 2
            else:
                x, n = m.embed_input(name, inputs[k])
                k += 1
            xs.append(x)
            masks.append(torch.arange(x.shape[1], device=x.device)[None] < n[:, None])
        x, mask = torch.cat(xs, 1), torch.cat(masks, 1)[:, None, None]  # [B, S, D], [B, 1, 1, S]
        memory = m.run_encoder(x, mask)
        additive = torch.zeros(mask.shape, dtype=memory.dtype).masked_fill(~mask, float("-inf"))
        cross = [t for kv in m.cross_cache(memory) for t in kv]
        return (memory, additive, *cross)


class _Decoder(nn.Module):
    """First call (no cache): tokens [B, T] from position 0, through output head `head`."""

    def __init__(self, model, head: str = "tokens"):
        super().__init__()
        self.m, self.head = model, head

    def forward(self, tokens, mask, cross: tuple):
        L = len(self.m.decoder)
        pairs = [(cross[2 * i], cross[2 * i + 1]) for i in range(L)]
        logits, present = self.m.decode_step(tokens, 0, None, pairs, mask, last=True, head=self.head)
        return (logits, *[t for kv in present for t in kv])


class _DecoderWithPast(nn.Module):
    """One new position `pos` [1] over the cached (k, v) of the earlier ones."""

    def __init__(self, model, head: str = "tokens"):
        super().__init__()
        self.m, self.head = model, head

    def forward(self, tokens, pos, mask, caches: tuple):
        L = len(self.m.decoder)
        past = [(caches[2 * i], caches[2 * i + 1]) for i in range(L)]
        cross = [(caches[2 * L + 2 * i], caches[2 * L + 2 * i + 1]) for i in range(L)]
        logits, present = self.m.decode_step(tokens, pos, past, cross, mask, last=True, head=self.head)
        return (logits, *[t for kv in present for t in kv])


class _FrameDecoder(nn.Module):
    """The frames head's first step: a zero step [B, 1, F] and its prenet masks [B, 1, 2, P]."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, frames, keep, mask, cross: tuple):
        L = len(self.m.decoder)
        pairs = [(cross[2 * i], cross[2 * i + 1]) for i in range(L)]
        out, present = self.m.decode_step(frames, 0, None, pairs, mask, last=True, head="frames", keep=keep)
        return (out, *[t for kv in present for t in kv])


class _FrameDecoderWithPast(nn.Module):
    """One more step `pos` [1] over the cached (k, v) of the earlier ones."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, frames, pos, keep, mask, caches: tuple):
        L = len(self.m.decoder)
        past = [(caches[2 * i], caches[2 * i + 1]) for i in range(L)]
        cross = [(caches[2 * L + 2 * i], caches[2 * L + 2 * i + 1]) for i in range(L)]
        out, present = self.m.decode_step(frames, pos, past, cross, mask, last=True, head="frames", keep=keep)
        return (out, *[t for kv in present for t in kv])


class _Postnet(nn.Module):
    """Generated pre-net steps [B, T, F] -> the output steps (the postnet's residual added)."""

    def __init__(self, model):
        super().__init__()
        self.head = model.heads["frames"]

    def forward(self, pre):
        return self.head.finish(pre)


def _export_frames(model, graphs: dict, tmp: Path, opset: int, mask, cross, caches, names, dims, log) -> None:
    """The frames head's graphs: its two decoder steps and its postnet."""
    from torch.export import Dim

    from ..generate.speech import PRENET

    cross_names, past_names, present = names
    batch, source, past, cross_dyn = dims
    width = model.cfg.frame_dim
    first, with_past = decoder_graphs("frames")
    step, keep = torch.zeros(2, 1, width), torch.full((2, 1, 2, PRENET), 2.0)
    log(f"exporting {first}")
    graphs[first] = _export(_FrameDecoder(model), [step, keep, mask, cross],
                            ({0: batch}, {0: batch}, {0: batch, 3: source}, cross_dyn),
                            ["frames", "keep", "mask", *cross_names], ["out", *present], tmp / f"{first}.onnx", opset)
    log(f"exporting {with_past}")
    L = len(model.decoder)
    graphs[with_past] = _export(
        _FrameDecoderWithPast(model), [torch.randn(2, 1, width), torch.tensor([5]), keep, mask, caches],
        ({0: batch}, None, {0: batch}, {0: batch, 3: source},
         tuple({0: batch, 2: past} for _ in range(2 * L)) + cross_dyn),
        ["frames", "pos", "keep", "mask", *past_names, *cross_names], ["out", *present], tmp / f"{with_past}.onnx",
        opset)
    log("exporting postnet_frames")
    graphs["postnet_frames"] = _export(_Postnet(model), [torch.randn(2, 7, width)], ({0: batch, 1: Dim("steps")},),
                                       ["pre"], ["post"], tmp / "postnet_frames.onnx", opset)


def _copy_speech(system, tmp: Path) -> None:
    """The speech statistics and feature settings the vocoder reads, beside the graphs."""
    from ..codec.speech import FOLDER

    codec = system.resources.get("audio")
    if codec is not None:
        (tmp / FOLDER).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(codec.folder / "config.json", tmp / FOLDER / "config.json")


class _ImageDecoder(nn.Module):
    """The image tokenizer's decoder with the conversion to pixels: codes [N, g*g] -> uint8
    [N, S, S, 3], exactly as `ImageTokenizer.decode` computes it in PyTorch."""

    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, codes):
        images = self.codec.decode(codes)  # [N, 3, S, S] in [-1, 1]
        return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def _example_inputs(model, adaptors, B: int = 2):
    """Inputs to trace each adaptor's graph with, by what it takes (`ofac.modalities.ADAPTORS`)."""
    cfg, out = model.cfg, []
    for name in adaptors:
        takes = ADAPTORS[name].takes
        if takes == "tokens":
            out += [torch.randint(4, cfg.vocab_size, (B, 7)), torch.tensor([7, 5][:B])]
        elif takes == "frames":
            out += [torch.randn(B, 40, cfg.n_mels), torch.tensor([40, 33][:B])]
        elif takes == "motion":
            out += [torch.randn(B, 30, cfg.motion_dim), torch.tensor([30, 22][:B])]
        elif takes == "clips":
            out.append(torch.randn(B, cfg.video_frames, 3, cfg.image_size, cfg.image_size))
        else:
            out.append(torch.randn(B, 3, cfg.image_size, cfg.image_size))
    return out


def _export(module, args, dynamic, names_in, names_out, path: Path, opset: int) -> dict:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(module, tuple(args), dynamo=True, dynamic_shapes=dynamic,
                                        input_names=names_in, output_names=names_out, opset_version=opset,
                                        verbose=False)
        except Exception as err:  # the exporter raises many kinds; all mean "does not convert"
            text = str(err)
            cause = text.split("## Exception summary", 1)[-1].strip().splitlines()[0] if text else type(err).__name__
            raise ExportError(f"the graph `{path.stem}` does not convert to ONNX: {cause}",
                              help="report it with the run's config.json; other graphs were not written") from None
    program.save(str(path))
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported graph `{path.stem}` is not valid ONNX: {str(err).splitlines()[0]}") from None
    return {"file": path.name, "inputs": names_in, "outputs": names_out}


def export(run_dir: str | Path, out: str | Path | None = None, checkpoint: str = "best", opset: int | None = None,
           tasks: list[str] | None = None, log=None) -> Path:
    """Write the ONNX folder of a run; all or nothing (built under a temporary name).  What is
    not given comes from the task file's `export { }` block (kept in the run's config.json):
    the folder (relative to the run directory; default `onnx`), the opset (23), the tasks (all)."""
    from torch.export import Dim

    log = log or (lambda msg: None)
    system = OFASys.from_pretrained(run_dir, checkpoint)
    block = system.config.get("export") or {}
    out = Path(out) if out is not None else Path(run_dir) / block.get("out", "onnx")
    opset = opset or block.get("opset", 23)
    model = system.backend.model.float().eval()
    chosen = tasks or list(block.get("tasks") or ()) or system.tasks
    unknown = [t for t in chosen if t not in system.programs]
    if unknown:
        raise ExportError(f"no task {', '.join(map(repr, unknown))} in this run",
                          help=f"tasks: {', '.join(system.tasks)}")
    if out.exists() and any(out.iterdir()):
        raise ExportError("the output folder is not empty", help="give a new --out; nothing was overwritten",
                          path=out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        L, cfg = len(model.decoder), model.cfg
        H, Dh = cfg.heads, cfg.d_model // cfg.heads
        batch, source, prefix, past = Dim("batch"), Dim("source"), Dim("prefix"), Dim("past")
        cross_names = [f"cross_{kv}_{i}" for i in range(L) for kv in "kv"]
        present = [f"present_{kv}_{i}" for i in range(L) for kv in "kv"]
        past_names = [f"past_{kv}_{i}" for i in range(L) for kv in "kv"]
        graphs, encoders = {}, {}
        signatures = {}
        for name in chosen:
            sig = encoder_inputs(system.programs[name])
            if not sig:
                raise ExportError(f"task `{name}` has no encoder input", help="export the other tasks (--task)")
            signatures.setdefault(sig, []).append(name)
        with torch.no_grad():
            for sig, names in signatures.items():
                gname = encoder_graph(sig)
                args, dyn, ins = [], [], []
                for k, ((adaptor, kind), x) in enumerate(zip(_flat(sig), _example_inputs(model, sig))):
                    args.append(x)
                    ins.append(f"{adaptor}_{kind}_{k}")
                    variable = takes_lengths(adaptor) and kind == "values"
                    dyn.append({0: batch, 1: Dim(f"length_{k}")} if variable else {0: batch})
                log(f"exporting {gname} (tasks {', '.join(names)})")
                graphs[gname] = _export(_Encoder(model, sig), [tuple(args)], (tuple(dyn),), ins,
                                        ["memory", "mask", *cross_names], tmp / f"{gname}.onnx", opset)
                graphs[gname]["adaptors"] = list(sig)
                for n in names:
                    encoders[n] = gname
            S = 9
            mask = torch.zeros(2, 1, 1, S)
            cross = tuple(torch.randn(2, H, S, Dh) for _ in range(2 * L))
            cross_dyn = tuple({0: batch, 2: source} for _ in range(2 * L))
            caches = tuple(torch.randn(2, H, 5, Dh) for _ in range(2 * L)) + cross
            if "frames" in cfg.outputs:
                _export_frames(model, graphs, tmp, opset, mask, cross, caches, names=(cross_names, past_names, present),
                               dims=(batch, source, past, cross_dyn), log=log)
                _copy_speech(system, tmp)
            if "motion" in cfg.outputs:
                from .export_motion import export_denoiser

                graphs["denoise_motion"] = export_denoiser(system, model, tmp, opset, _export, log)
            for head in (h for h in cfg.outputs if h not in ("frames", "motion")):
                first, with_past = decoder_graphs(head)
                log(f"exporting {first}")
                graphs[first] = _export(_Decoder(model, head), [torch.randint(4, cfg.vocab_size, (2, 3)), mask, cross],
                                        ({0: batch, 1: prefix}, {0: batch, 3: source}, cross_dyn),
                                        ["tokens", "mask", *cross_names], ["logits", *present],
                                        tmp / f"{first}.onnx", opset)
                log(f"exporting {with_past}")
                graphs[with_past] = _export(
                    _DecoderWithPast(model, head), [torch.randint(4, cfg.vocab_size, (2, 1)), torch.tensor([5]), mask,
                                                    caches],
                    ({0: batch}, None, {0: batch, 3: source},
                     tuple({0: batch, 2: past} for _ in range(2 * L)) + cross_dyn),
                    ["tokens", "pos", "mask", *past_names, *cross_names], ["logits", *present],
                    tmp / f"{with_past}.onnx", opset)
            image = system.resources.get("image")
            if image is not None:
                folder = tmp / "tokenizers" / "image"
                folder.mkdir(parents=True)
                for name in ("config.json", "report.json"):
                    if (image.folder / name).exists():
                        shutil.copyfile(image.folder / name, folder / name)
                log("exporting tokenizers/image/image_decoder")
                grid = image.cfg.grid
                graphs["image_decoder"] = _export(
                    _ImageDecoder(image.codec.float().eval()), [torch.randint(0, image.cfg.codes, (2, grid * grid))],
                    ({0: batch},), ["codes"], ["images"], folder / "image_decoder.onnx", opset)
                graphs["image_decoder"]["file"] = "tokenizers/image/image_decoder.onnx"
        run = Path(run_dir)
        for f in FILES:
            if (run / f).exists():
                shutil.copyfile(run / f, tmp / f)
        write_json(tmp / "manifest.json", {
            "ofac_version": __version__, "opset": opset, "format": FORMAT, "checkpoint": str(system.weights),
            "model": cfg.to_dict(), "layers": L, "heads": H, "head_dim": Dh, "graphs": graphs, "encoders": encoders,
            "tasks": chosen, "adaptors": sorted({a for sig in signatures for a in sig})})
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _flat(sig: tuple[str, ...]) -> list[tuple[str, str]]:
    """Graph inputs of a signature: (adaptor, values) and, for variable-length ones, (adaptor, lengths)."""
    out = []
    for name in sig:
        out.append((name, "values"))
        if takes_lengths(name):
            out.append((name, "lengths"))
    return out
