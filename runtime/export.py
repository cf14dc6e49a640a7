"""`ofac export`: ONNX graphs of a trained model, and the ONNX Runtime model that runs them.

The folder holds the encoder/decoder/decoder-with-past layout:

  encoder_<inputs>.onnx   the input adaptors and the encoder, one graph per sequence of input
                          adaptors the run's tasks use (e.g. `image_patch-text`); outputs the
                          memory, its additive mask (0 real / -inf padding) and each decoder
                          layer's cross-attention keys and values (computed once per source)
  decoder.onnx            the first decoder call: BOS and the forced prefix at once -> logits of
                          the last position and each layer's self-attention (k, v)
  decoder_with_past.onnx  one new position over the cached (k, v) -> logits, the grown cache
  manifest.json           graphs with their input/output names and dynamic axes, opset, the
                          model config, which encoder serves which task, ofac version
  programs.json, tokenizer.json, answers.json, config.json   as in the run directory

Dynamic axes: batch, source length (and text lengths), prefix length, cache length.  Segments
of one example are concatenated padded (a text segment keeps its padding, masked out), which
the encoder's attention treats exactly as the compact sequence the PyTorch path builds.

`OnnxModel` offers the methods generation calls (`encode`, `cross_cache`, `decode_step`), so
beam search, sampling, closed sets and postprocessing are the very code the PyTorch backend
runs; only the network runs in ONNX Runtime."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ofac import __version__, ir
from ofac.diagnostics import Diagnostic, Severity

from .checkpoint import CheckpointError, read_json, write_json
from .errors import RunError

FILES = ("programs.json", "tokenizer.json", "answers.json", "config.json")


class ExportError(RunError):
    def __init__(self, message: str, help: str = "", path: Path | None = None):
        self.diagnostic = Diagnostic("E0119", Severity.ERROR, message, None, help=help,
                                     file=str(path) if path else None)
        super().__init__(message + (f"\n  help: {help}" if help else ""))


def encoder_inputs(task: ir.TaskIR) -> tuple[str, ...]:
    """The adaptors of a task's encoder segments, in order (its encoder graph's signature)."""
    program = task.programs[0]
    (concat,) = program.find("encoder.concat")
    return tuple(program.ops[a].op.split(".", 1)[1] for a in concat.args)


def _signature_name(adaptors: tuple[str, ...]) -> str:
    return "-".join(adaptors)


_VARIABLE = {"text", "audio_fbank"}  # adaptors with a lengths input


# ------------------------------------------------------------------------------ graphs

class _Encoder(nn.Module):
    def __init__(self, model, adaptors: tuple[str, ...]):
        super().__init__()
        self.m, self.adaptors = model, adaptors

    def forward(self, inputs: tuple):
        m, xs, masks, k = self.m, [], [], 0
        for name in self.adaptors:
            if name in _VARIABLE:
                x, n = m.adaptors[name](inputs[k], inputs[k + 1])
                k += 2
            else:
                x, n = m.adaptors[name](inputs[k])
                k += 1
            xs.append(x + m.types[name])
            masks.append(torch.arange(x.shape[1], device=x.device)[None] < n[:, None])
        x, mask = torch.cat(xs, 1), torch.cat(masks, 1)[:, None, None]  # [B, S, D], [B, 1, 1, S]
        x = m.ln_emb(x)
        for block in m.encoder:
            x = block(x, mask=mask)
        memory = m.ln_enc(x)
        additive = torch.zeros(mask.shape, dtype=memory.dtype).masked_fill(~mask, float("-inf"))
        cross = [t for kv in m.cross_cache(memory) for t in kv]
        return (memory, additive, *cross)


class _Decoder(nn.Module):
    """First call (no cache): tokens [B, T] from position 0."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, tokens, mask, cross: tuple):
        L = len(self.m.decoder)
        pairs = [(cross[2 * i], cross[2 * i + 1]) for i in range(L)]
        logits, present = self.m.decode_step(tokens, 0, None, pairs, mask, last=True)
        return (logits[:, -1], *[t for kv in present for t in kv])


class _DecoderWithPast(nn.Module):
    """One new position `pos` [1] over the cached (k, v) of the earlier ones."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, tokens, pos, mask, caches: tuple):
        m, L = self.m, len(self.m.decoder)
        past = [(caches[2 * i], caches[2 * i + 1]) for i in range(L)]
        cross = [(caches[2 * L + 2 * i], caches[2 * L + 2 * i + 1]) for i in range(L)]
        x = m.ln_emb(m.embed(tokens) * math.sqrt(m.cfg.d_model) + m.dec_pos(pos))  # as decode_step
        present = []
        for i, block in enumerate(m.decoder):
            x, kv = block.step(x, past[i], cross[i], mask)
            present += list(kv)
        return (nn.functional.linear(m.ln_dec(x[:, -1]), m.embed.weight), *present)


def _example_inputs(model, adaptors, B: int = 2):
    cfg, out = model.cfg, []
    for name in adaptors:
        if name == "text":
            out += [torch.randint(4, cfg.vocab_size, (B, 7)), torch.tensor([7, 5][:B])]
        elif name == "audio_fbank":
            out += [torch.randn(B, 40, cfg.n_mels), torch.tensor([40, 33][:B])]
        elif name == "video_image_sequence":
            out.append(torch.randn(B, cfg.video_frames, 3, cfg.image_size, cfg.image_size))
        else:
            out.append(torch.randn(B, 3, cfg.image_size, cfg.image_size))
    return out


def _export(module, args, dynamic, names_in, names_out, path: Path, opset: int) -> dict:
    import warnings

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


def export(run_dir: str | Path, out: str | Path, checkpoint: str = "best", opset: int = 18,
           tasks: list[str] | None = None, log=None) -> Path:
    """Write the ONNX folder of a run; all or nothing (built under a temporary name)."""
    from torch.export import Dim

    from .inference import OFASys

    log = log or (lambda msg: None)
    system = OFASys.from_pretrained(run_dir, checkpoint)
    model = system.model.float().eval()
    chosen = tasks or system.tasks
    unknown = [t for t in chosen if t not in system.programs]
    if unknown:
        raise ExportError(f"no task {', '.join(map(repr, unknown))} in this run",
                          help=f"tasks: {', '.join(system.tasks)}")
    out = Path(out)
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
                gname = "encoder_" + _signature_name(sig)
                args, dyn, ins = [], [], []
                for k, ((adaptor, kind), x) in enumerate(zip(_flat(sig), _example_inputs(model, sig))):
                    args.append(x)
                    ins.append(f"{adaptor}_{kind}_{k}")
                    variable = adaptor in _VARIABLE and kind == "values"
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
            log("exporting decoder")
            graphs["decoder"] = _export(_Decoder(model), [torch.randint(4, cfg.vocab_size, (2, 3)), mask, cross],
                                        ({0: batch, 1: prefix}, {0: batch, 3: source}, cross_dyn),
                                        ["tokens", "mask", *cross_names], ["logits", *present],
                                        tmp / "decoder.onnx", opset)
            caches = tuple(torch.randn(2, H, 5, Dh) for _ in range(2 * L)) + cross
            log("exporting decoder_with_past")
            graphs["decoder_with_past"] = _export(
                _DecoderWithPast(model), [torch.randint(4, cfg.vocab_size, (2, 1)), torch.tensor([5]), mask, caches],
                ({0: batch}, None, {0: batch, 3: source}, tuple({0: batch, 2: past} for _ in range(2 * L)) + cross_dyn),
                ["tokens", "pos", "mask", *past_names, *cross_names], ["logits", *present],
                tmp / "decoder_with_past.onnx", opset)
        run = Path(run_dir)
        for f in FILES:
            if (run / f).exists():
                shutil.copyfile(run / f, tmp / f)
        write_json(tmp / "manifest.json", {
            "ofac_version": __version__, "opset": opset, "format": "ofac-onnx-1", "checkpoint": str(system.weights),
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
        if name in _VARIABLE:
            out.append((name, "lengths"))
    return out


# ------------------------------------------------------------------------------ ONNX Runtime

class OnnxModel:
    """The exported graphs behind the interface generation uses (encode, cross_cache,
    decode_step): torch tensors in and out, ONNX Runtime inside."""

    def __init__(self, folder: Path, threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = read_json(self.folder / "manifest.json")
        if self.manifest.get("format") != "ofac-onnx-1":
            raise CheckpointError("E0111", "not an ofac ONNX export (unknown manifest format)",
                                  self.folder / "manifest.json", help="export the run again with `ofac export`")
        options = ort.SessionOptions()
        # no busy-waiting after a run: the generation loop's own work follows every call, and
        # spinning pool threads would take the cores it needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._options, self._sessions = options, {}
        self.adaptors = set(self.manifest["adaptors"]) | {"text"}
        self.L = self.manifest["layers"]
        self.vocab_size = self.manifest["model"]["vocab_size"]
        self._cross: dict[int, list] = {}
        self._cross_np: tuple | None = None  # (the cross list of the running generation, as numpy)

    def session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort

            path = self.folder / self.manifest["graphs"][name]["file"]
            self._sessions[name] = ort.InferenceSession(str(path), self._options, providers=["CPUExecutionProvider"])
        return self._sessions[name]

    # the nn.Module methods generation calls
    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    @property
    def training(self) -> bool:
        return False

    def num_parameters(self) -> int:
        return 0

    def encoder_for(self, adaptors: tuple[str, ...]) -> str:
        name = "encoder_" + _signature_name(adaptors)
        if name not in self.manifest["graphs"]:
            have = [g[len("encoder_"):] for g in self.manifest["graphs"] if g.startswith("encoder_")]
            raise ExportError(f"no exported encoder takes inputs ({', '.join(adaptors)})",
                              help=f"exported: {'; '.join(have)}; export a task with these inputs")
        return name

    def encode(self, batch):
        adaptors = tuple(a for a, _ in batch.layout[0])
        if any(tuple(a for a, _ in lay) != adaptors for lay in batch.layout):
            raise ExportError("a batch mixing instructions with different inputs", help="answer them separately")
        feeds, k = {}, 0
        sess = self.session(self.encoder_for(adaptors))
        names = [i.name for i in sess.get_inputs()]
        for pos, name in enumerate(adaptors):
            rows = [lay[pos][1] for lay in batch.layout]
            feeds[names[k]] = batch.inputs[name][rows].cpu().numpy()
            k += 1
            if name in _VARIABLE:
                feeds[names[k]] = batch.lengths[name][rows].cpu().numpy().astype(np.int64)
                k += 1
        out = sess.run(None, feeds)
        memory = torch.from_numpy(out[0])
        mask = torch.from_numpy(out[1]) == 0  # additive -> boolean (True = real)
        self._cross[id(memory)] = [(torch.from_numpy(out[2 + 2 * i]), torch.from_numpy(out[3 + 2 * i]))
                                   for i in range(self.L)]
        return memory, mask

    def cross_cache(self, memory):
        return self._cross.pop(id(memory))

    def decode_step(self, tokens, start: int, past, cross, memory_mask, last: bool = True, pack=None):
        np_ = lambda t: np.ascontiguousarray(t.cpu().numpy())  # noqa: E731
        if self._cross_np is None or self._cross_np[0] is not cross:  # the same list every step
            self._cross_np = (cross, [np_(t) for kv in cross for t in kv])
        cross_flat = self._cross_np[1]
        if past is None:
            sess = self.session("decoder")
            feeds = [np_(tokens), np_(memory_mask), *cross_flat]
        else:
            sess = self.session("decoder_with_past")
            feeds = [np_(tokens), np.array([start], dtype=np.int64), np_(memory_mask),
                     *[np_(t) for kv in past for t in kv], *cross_flat]
        names = [i.name for i in sess.get_inputs()]
        out = sess.run(None, dict(zip(names, feeds)))
        present = [(torch.from_numpy(out[1 + 2 * i]), torch.from_numpy(out[2 + 2 * i])) for i in range(self.L)]
        return torch.from_numpy(out[0])[:, None], present


def load_export(folder: Path, threads: int | None = None):
    """(OnnxModel, config, programs, answers, vocab) of an export folder."""
    from .tokenizer import Vocab

    folder = Path(folder)
    if not (folder / "manifest.json").exists():
        raise CheckpointError("E0110", "not an ONNX export folder (no manifest.json)", folder,
                              help="write one with `ofac export RUN_DIR --out DIR`")
    model = OnnxModel(folder, threads)
    config = read_json(folder / "config.json")
    programs = {t.task: t for t in map(ir.from_json, read_json(folder / "programs.json"))}
    answers = read_json(folder / "answers.json") if (folder / "answers.json").exists() else {}
    return model, config, programs, answers, Vocab.load(folder / "tokenizer.json")
