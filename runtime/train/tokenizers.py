"""Stage 0 of a run with image or speech outputs: its image tokenizer and its speech
statistics, before the main model.

Unless the `image_tokenizer { path = ... }` block names a trained one, the tokenizer is trained
on the run's own training images (every image cell of a `preprocess=image_vqgan` column, each
file once), saved in RUN/tokenizers/image, and reported (held-out PSNR / SSIM, codes used).  Then
the codes of every training and validation image are computed once and cached beside it, so
training never runs the tokenizer.  A start that failed after this stage finds the tokenizer on
its next try and reuses it; `--resume` always does.

Speech targets are normalized by the mean and standard deviation of each mel bin over the
training utterances (up to SPEECH_UTTERANCES of them), counted once and kept in
RUN/tokenizers/audio with the feature settings the vocoder inverts.  Motion features (inputs and
targets) are z-scored by their mean and standard deviation over the training clips (up to
MOTION_CLIPS of them), kept in RUN/tokenizers/motion with the skeleton every clip must share."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codec import motion, speech
from ..codec.config import ImageCodecConfig
from ..codec.tokenizer import FOLDER, ImageTokenizer, codec_config, image_key, image_targets, named_folder
from ..codec.training import CodecTraining, train_codec
from ..errors import DataError
from ..preprocess.audio import log_mel
from ..preprocess.image_codes import load_pixels, parse_codes
from ..preprocess.media import MediaError, load_audio
from ..store.files import CheckpointError
from .options import max_steps


def prepare(run, run_dir: Path, log, resume: bool = False) -> ImageTokenizer | None:
    """The run's image tokenizer, trained (or copied, or found again) with its code cache filled
    for the training and validation images; None when the run has no image outputs."""
    cfg = codec_config(run)
    if cfg is None:
        return None
    folder = run_dir / FOLDER
    settings = run.image_tokenizer
    tok = _existing(folder, cfg, resume, log)
    source = named_folder(run)
    if tok is None and source is not None:
        given = ImageTokenizer.load(source, codes=False)
        if given.cfg != cfg:
            raise CheckpointError("E0116", f"the image tokenizer at `{source}` makes {given.cfg.size}px images of "
                                  f"{given.cfg.grid}x{given.cfg.grid} codes out of {given.cfg.codes}; the tasks ask "
                                  f"for {cfg.size}px, {cfg.grid}x{cfg.grid} of {cfg.codes}", source,
                                  help="set image_tokenizer { image_size, grid, codes } to the tokenizer's sizes")
        tok = given.copy_to(folder)
        log(f"image tokenizer: using {source} ({tok.describe()})")
    if tok is None:
        tok = _train(run, folder, cfg, settings, log)
    _fill_cache(run, tok, log)
    return tok


def _existing(folder: Path, cfg: ImageCodecConfig, resume: bool, log) -> ImageTokenizer | None:
    if not (folder / "config.json").exists():
        if resume:
            raise CheckpointError("E0110", "the run has image outputs but no image tokenizer", folder,
                                  help="the run directory is incomplete: start the run again with a new --out")
        return None
    tok = ImageTokenizer.load(folder)
    if tok.cfg != cfg:
        if resume:
            raise CheckpointError("E0116", "the run's image tokenizer differs from the task file's "
                                  "image_tokenizer block", folder,
                                  help="resume with the task file that started the run")
        return None  # an earlier start with other settings: train again
    if not resume:
        log(f"image tokenizer: reusing the one an earlier start trained ({tok.describe()})")
    return tok


def _cells(run, split: str, targets=image_targets, with_op: bool = False):
    """(value, base_dir, where) of every cell of the run's image targets (or other `targets`)
    in `split`, and the op that reads it `with_op`."""
    from ..data.tasks import task_data

    datas = task_data(run, split, None)
    for task, program, op in targets(run):
        data = datas.get(task.name)
        if data is None:
            continue
        column = program.arg(op).get("column")
        for i in range(len(data)):
            row = data.readable(i)
            if row is None:
                continue
            source, j = data.locate(i)
            value = row.get(column)
            if value is not None and (targets is not image_targets or parse_codes(value) is None):
                where = (source.name, source.row_number(j), column)
                yield (value, source.base_dir, where, op) if with_op else (value, source.base_dir, where)


def _unique(cells):
    seen = set()
    for value, base_dir, where in cells:
        key = image_key(value, base_dir)
        if key not in seen:
            seen.add(key)
            yield key, value, base_dir, where


def _pixels(value, base_dir, where, size: int) -> np.ndarray:
    try:
        return load_pixels(value, base_dir, size)
    except (MediaError, OSError, ValueError) as err:
        file, row, column = where
        raise DataError("E0104", f"cannot read the target image: {err}", file=file, row=row, column=column,
                        help="every image of a `preprocess=image_vqgan` column is read before training") from None


def _train(run, folder: Path, cfg: ImageCodecConfig, settings: dict, log) -> ImageTokenizer:
    images = [_pixels(v, b, w, cfg.size) for _, v, b, w in _unique(_cells(run, "train"))]
    if len(images) < 2:
        raise DataError("E0105", f"the image tokenizer needs training images: found {len(images)} in the "
                        "training data's image targets", file=run.source,
                        help="give the image tasks `train` data, or name a trained tokenizer with "
                             "image_tokenizer { path = ... }")
    pixels = np.stack(images)
    steps = settings["steps"] if max_steps() is None else min(settings["steps"], max_steps())
    how = CodecTraining(steps=steps, lr=settings["lr"], batch_size=settings["batch_size"],
                        seed=int(run.train.get("seed", 1)))
    log(f"image tokenizer: training a VQ-VAE ({cfg.size}px -> {cfg.grid}x{cfg.grid} codes of {cfg.codes}) on "
        f"{len(pixels)} training images, {steps} steps (image_tokenizer {{ steps }})")
    codec, report = train_codec(pixels, cfg, how,
                                log=lambda step, loss: log(f"image tokenizer: step {step}/{steps} loss {loss:.4f}"))
    tok = ImageTokenizer.save(folder, codec, report, {"steps": steps, "lr": how.lr, "batch_size": how.batch_size,
                                                      "seed": how.seed, "images": len(pixels)})
    log(f"image tokenizer: trained in {report['seconds']:.0f} s: held-out PSNR {report['psnr']:.1f} dB, "
        f"SSIM {report['ssim']:.3f}, {report['codes_used']}/{cfg.codes} codes used (saved in {folder})")
    return tok


def _fill_cache(run, tok: ImageTokenizer, log, batch: int = 256) -> None:
    """Codes of every training and validation image not cached yet, encoded in batches."""
    missing = [(k, v, b, w) for split in ("train", "valid") for k, v, b, w in _unique(_cells(run, split))
               if k not in tok.cache]
    missing = list({k: (k, v, b, w) for k, v, b, w in missing}.values())
    if not missing:
        return
    log(f"image tokenizer: encoding {len(missing)} images once (cached in {tok.folder / 'codes.npz'})")
    for lo in range(0, len(missing), batch):
        part = missing[lo:lo + batch]
        codes = tok.encode(np.stack([_pixels(v, b, w, tok.cfg.size) for _, v, b, w in part]))
        for (key, *_), c in zip(part, codes):
            tok.cache[key] = c.astype(np.uint16)
    tok.save_codes()


SPEECH_UTTERANCES = 2000


def prepare_speech(run, run_dir: Path, log, resume: bool = False) -> speech.SpeechCodec | None:
    """The run's speech statistics, counted over its training utterances (or found again from
    an earlier start); None when the run has no speech outputs."""
    features = speech.features_of(run)
    if features is None:
        return None
    folder = run_dir / speech.FOLDER
    if (folder / "config.json").exists():
        codec = speech.SpeechCodec.load(folder)
        if codec.features == features:
            return codec
        if resume:
            raise CheckpointError("E0116", "the run's speech features differ from the task file's", folder,
                                  help="resume with the task file that started the run")
    elif resume:
        raise CheckpointError("E0110", "the run has speech outputs but no speech statistics", folder,
                              help="the run directory is incomplete: start the run again with a new --out")
    stats = speech.Statistics(features.n_mels)
    attrs = vars(features)
    seen = set()
    for value, base_dir, where in _cells(run, "train", speech.speech_targets):
        key = image_key(value, base_dir)  # a file by path, anything else by content
        if key in seen:
            continue
        seen.add(key)
        try:
            wav, rate = load_audio(value, base_dir)
            stats.add(log_mel(wav, rate, attrs).numpy())
        except (MediaError, OSError, ValueError, RuntimeError) as err:
            file, row, column = where
            raise DataError("E0104", f"cannot read the target audio: {err}", file=file, row=row, column=column,
                            help="every speech target's audio is read before training") from None
        if stats.utterances >= SPEECH_UTTERANCES:
            break
    if stats.utterances == 0:
        raise DataError("E0105", "speech outputs need training audio: the speech targets' training data has none",
                        file=run.source, help="give the speech tasks `train` data")
    codec = speech.SpeechCodec.save(folder, features, stats)
    log(f"speech: normalizing targets by the statistics of {codec.describe()} (saved in {folder})")
    return codec


MOTION_CLIPS = 4000


def prepare_motion(run, run_dir: Path, log, resume: bool = False) -> motion.MotionCodec | None:
    """The run's motion statistics and skeleton, counted over its training clips (or found again
    from an earlier start); None when the run has no MOTION slots."""
    from ..preprocess.motion import encode, read_clip

    if not motion.motion_ops(run):
        return None
    folder = run_dir / motion.FOLDER
    if (folder / "config.json").exists():
        return motion.MotionCodec.load(folder)
    if resume:
        raise CheckpointError("E0110", "the run has MOTION slots but no motion statistics", folder,
                              help="the run directory is incomplete: start the run again with a new --out")
    skeleton, first, clips, seen = None, None, [], set()
    for value, base_dir, where, op in _cells(run, "train", motion.motion_ops, with_op=True):
        key = image_key(value, base_dir)
        if key in seen:
            continue
        seen.add(key)
        file, row, column = where
        try:
            sk, frames, _ = read_clip(value, dict(op.attrs), base_dir)
        except ValueError as err:
            raise DataError("E0104", f"cannot read the motion clip: {err}", file=file, row=row, column=column,
                            help="every motion clip is read before training") from None
        if skeleton is None:
            skeleton, first = sk, where
        elif not skeleton.same_as(sk):
            raise DataError("E0104", f"this clip's skeleton ({sk.joints} joints) is not the one of {first[0]} row "
                            f"{first[1]} ({skeleton.joints} joints): one run, one skeleton", file=file, row=row,
                            column=column, help="retarget the clips to one skeleton, or train them in separate runs")
        clips.append(encode(sk, frames))
        if len(clips) >= MOTION_CLIPS:
            break
    if not clips:
        raise DataError("E0105", "MOTION slots need training clips: their tasks' training data has none",
                        file=run.source, help="give the motion tasks `train` data")
    codec = motion.MotionCodec.save(folder, skeleton, clips)
    log(f"motion: normalizing features by the statistics of {codec.describe()} (saved in {folder})")
    return codec



def motion_width(run) -> int:
    """Features per frame of the run's motion (0: no MOTION slots): from its first training clip's
    skeleton (stage 0 checks that every clip shares it)."""
    from ..preprocess.motion import feature_dim, read_clip

    if not motion.motion_ops(run):
        return 0
    for value, base_dir, where, op in _cells(run, "train", motion.motion_ops, with_op=True):
        try:
            return feature_dim(read_clip(value, dict(op.attrs), base_dir)[0])
        except ValueError as err:
            raise DataError("E0104", f"cannot read the motion clip: {err}", file=where[0], row=where[1],
                            column=where[2], help="every motion clip is read before training") from None
    raise DataError("E0105", "MOTION slots need training clips: their tasks' training data has none",
                    file=run.source, help="give the motion tasks `train` data")
