"""`ofac data`: run a task file's data path on a few rows and show what the model will see.
Bad rows come back as diagnostics, exactly as training would report them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ofac.diagnostics import Diagnostic, Severity

from ..errors import DataError
from ..vocab.tokenizer import SPECIALS, Vocab
from .corpus import run_vocab
from .tasks import as_definition, task_data


@dataclass
class Preview:
    lines: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def show_tokens(vocab: Vocab, ids) -> str:
    """Token ids as text: BPE runs decoded, special and reserved tokens by name."""
    names = {i: s for i, s in enumerate(SPECIALS)}
    names.update({t: f"<bin_{k}>" for k, t in enumerate(vocab.bin_ids)})
    names.update({t: f"<phone_{p}>" for p, t in vocab.phone_ids.items()})
    out, run = [], []
    for i in [int(x) for x in ids]:
        if i in names or i in vocab.reserved_ids:
            if run:
                out.append(vocab.decode(run))
                run = []
            out.append(names.get(i, f"<{i}>"))
        else:
            run.append(i)
    if run:
        out.append(vocab.decode(run))
    return " ".join(out)


def preview_resources(definition) -> tuple[dict | None, str]:
    """The image tokenizer `ofac data` shows image targets with: the one `image_tokenizer { path }`
    names, else the one the run directory (`train { out }`) holds, else none yet (the targets
    are read and checked, and shown without codes); and a line saying which."""
    from ..codec.tokenizer import FOLDER, ImageTokenizer, codec_config, named_folder
    from ..preprocess.image_codes import NotTrained

    speech, heard = _speech_resource(definition)
    cfg = codec_config(definition)
    if cfg is None:
        return speech, heard

    folders = [named_folder(definition)]
    if definition.train.get("out"):
        folders.append(definition.base_dir / definition.train["out"] / FOLDER)  # an absolute `out` stays itself
    for folder in folders:
        if folder is not None and (folder / "config.json").exists():
            tok = ImageTokenizer.load(folder, codes=False)
            if tok.cfg == cfg:
                return {"image": tok} | (speech or {}), "\n".join(
                    filter(None, (f"image tokenizer: {folder} ({tok.describe()})", heard)))
    return {"image": NotTrained(cfg)} | (speech or {}), "\n".join(filter(None, (
        f"image tokenizer: not trained yet ({cfg.size}px -> {cfg.grid}x{cfg.grid} codes of {cfg.codes}; `ofac run` "
        "trains it before the model)", heard)))


def _speech_resource(definition) -> tuple[dict | None, str]:
    """The speech statistics speech targets are shown with: the run directory's, else none yet
    (the frames are shown unnormalized)."""
    from ..codec.speech import FOLDER, SpeechCodec, features_of

    features = features_of(definition)
    if features is None:
        return None, ""
    if definition.train.get("out"):
        folder = definition.base_dir / definition.train["out"] / FOLDER
        if (folder / "config.json").exists():
            codec = SpeechCodec.load(folder)
            if codec.features == features:
                return {"audio": codec}, f"speech statistics: {folder} ({codec.describe()})"
    return {"audio": SpeechCodec.unnormalized(features)}, ("speech statistics: not counted yet (`ofac run` counts "
                                                            "them before the model); frames shown unnormalized")


def show_motion(target) -> str:
    """A motion target as the frames the denoiser is trained on."""
    if not target.length:
        return "<predicted motion>"
    given = int(target.known.sum())
    return (f"<motion: {target.length} frames of {target.target.shape[1]} features"
            + (f", {given} given" if given else "") + ">")


def show_frames(target, k: int, n_mels: int) -> str:
    """A speech target as the steps the decoder writes."""
    if not target.length:
        return "<predicted speech>"
    return (f"<speech: {target.length} steps of {k} x {n_mels} log-mel frames ({target.length * k} frames), "
            f"first step mean {float(target.target[0].mean()):+.2f}>")


def show_codes(target, tokenizer, shown: int = 12) -> str:
    """An image target as the codes the decoder writes (the first `shown` of them); before the
    run's `tokenizer` is trained, how many codes it will be."""
    from ..preprocess.image_codes import NotTrained

    codes = [int(t) for t, m in zip(target.target, target.loss_mask) if m]
    if not codes:
        if isinstance(tokenizer, NotTrained):
            return f"<an image as {tokenizer.cfg.grid ** 2} codes, once the image tokenizer is trained>"
        return "<predicted>"
    more = f" ... ({len(codes)} codes)" if len(codes) > shown else ""
    return " ".join(f"<code_{c}>" for c in codes[:shown]) + more


def preview(run, base_dir: Path | None = None, task: str | None = None, split: str = "train",
            rows: int = 2, seed: int = 1, every: bool = False, progress=None) -> Preview:
    """What the model sees of the first `rows` rows of each task (`ofac data`); with `every`,
    each row is decoded (`ofac data --all`) and every bad one reported, `progress(done, total)`
    told as it goes."""
    definition = as_definition(run, base_dir)
    result = Preview()
    try:
        vocab = run_vocab(definition, max_rows=2000)
        resources, note = preview_resources(definition)
        datas = task_data(definition, split, vocab, resources)
    except DataError as err:
        result.diagnostics.append(err.diagnostic)
        return result
    names = [t.name for t in definition.tasks if task in (None, t.name)]
    result.lines.append(f"vocabulary: {len(vocab)} tokens ({len(vocab.bin_ids)} box bins, "
                        f"{len(vocab.phone_ids)} phones, {len(vocab.code_ids)} image codes)")
    if note:
        result.lines.append(note)
    if every:
        _decode_every(result, [(n, datas.get(n)) for n in names], split, seed, progress)
        return result
    for name in names:
        data = datas.get(name)
        if data is None:
            result.lines.append(f"\ntask {name}: no `{split}` data")
            continue
        result.lines.append(f"\ntask {name}: {len(data)} {split} rows")
        for i in range(min(rows, len(data))):
            try:
                s = data.sample(i, np.random.default_rng((seed, i)))
            except DataError as err:
                result.diagnostics.append(err.diagnostic)
                continue
            if not hasattr(s, "encoder"):  # skipped under on_error = skip
                result.lines.append(f"  row {s.row}: skipped ({s.message})")
                continue
            result.lines.append(f"  row {s.meta['row']}:")
            for seg in s.encoder:
                if isinstance(seg.data, np.ndarray) and seg.data.dtype == np.int64:  # token ids
                    result.lines.append(f"    encoder {seg.adaptor:<22} {show_tokens(vocab, seg.data)}")
                else:
                    kind = str(seg.data.dtype).removeprefix("torch.")  # torch.uint8 -> uint8
                    result.lines.append(f"    encoder {seg.adaptor:<22} {kind}{list(seg.data.shape)}")
            target = s.target  # a TokenTarget (the token and code heads)
            if s.head == "codes":
                result.lines.append(f"    decoder target (with loss)     {show_codes(target, resources['image'])}")
                continue
            if s.head == "motion":
                result.lines.append(f"    decoder target (with loss)     {show_motion(target)}")
                continue
            if s.head == "frames":
                n_mels = resources["audio"].features.n_mels
                shown = show_frames(target, target.target.shape[1] // n_mels, n_mels)
                result.lines.append(f"    decoder target (with loss)     {shown}")
                continue
            forced = show_tokens(vocab, target.target[:target.prefix])
            trained = show_tokens(vocab, [t for t, m in zip(target.target, target.loss_mask) if m])
            if forced:
                result.lines.append(f"    decoder prefix (forced)        {forced}")
            result.lines.append(f"    decoder target (with loss)     {trained}")
    return result


def _decode_every(result: Preview, tasks, split: str, seed: int, progress) -> None:
    """Decode each row of each task, as training would, and report every bad one."""
    total = sum(len(data) for _, data in tasks if data is not None)
    done = 0
    for name, data in tasks:
        if data is None:
            result.lines.append(f"task {name}: no `{split}` data")
            continue
        bad = skipped = 0
        for i in range(len(data)):
            try:
                s = data.sample(i, np.random.default_rng((seed, i)))
                if not hasattr(s, "encoder"):  # skipped under on_error = skip: still a bad row
                    skipped += 1
                    result.diagnostics.append(Diagnostic("E0104", Severity.WARNING, f"{s.message} (skipped under "
                                                         "on_error = skip)", None, file=s.file, line=s.row))
            except DataError as err:
                bad += 1
                result.diagnostics.append(err.diagnostic)
            done += 1
            if progress is not None:
                progress(done, total)
        verdict = "all decode" if not bad + skipped else f"{bad + skipped} bad" + (
            f" ({skipped} skipped under on_error = skip)" if skipped else "")
        result.lines.append(f"task {name}: {len(data)} {split} rows, {verdict}")
