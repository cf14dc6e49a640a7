"""Generate the text-to-speech dataset (deterministic; about a minute; nothing is downloaded).

  python examples/make_speech.py [--out examples/speech] [--train 1500] [--valid 60] [--seed 0]

Short phrases of the zoo's words (digits, colours, shapes, sizes, places; one to three words)
spoken by espeak-ng (examples/speech.py) in one voice at 22,050 Hz, written as FLAC with the
leading and trailing digital silence trimmed, for examples/speech.ofa:

  tts_train.jsonl  text, phones, audio   "red circle", "T r 'i: | ...", audio/tts_0.flac
  tts_valid.jsonl  the same for phrases never in training (held out by phrase)
  asr_train.jsonl  audio, text   the training speech, and the same speech re-synthesized by the
                   Griffin-Lim vocoder from its log-mel frames, so a speech-to-text judge trained on
                   it hears vocoder artefacts as it will in generated speech
  asr_valid.jsonl  audio, text   the held-out speech

`phones` are espeak-ng's phoneme mnemonics (`|` between words), the PHONE column of OFASys' TTS
instruction; `text` serves the instruction for users without phonemes.  An existing output with
the same settings is kept (`--force` regenerates).  OFAC_MAX_ROWS=N caps every file at N rows."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = ("red", "blue", "green", "yellow", "purple", "cyan")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
PLACES = ("left", "right", "top", "bottom", "center")
RATE, VOICE, WPM = 22050, "en", 170


def phrase(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 3)))
    if kind < 0.7:
        return f"{rng.choice(COLOURS)} {rng.choice(SHAPES)}"
    if kind < 0.85:
        return f"{rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)}"
    return f"{rng.choice(SHAPES)} {rng.choice(PLACES)}"


def trim(wav: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wav) > 0)
    return wav[loud[0]:loud[-1] + 1] if len(loud) else wav


def phrases(rng: random.Random, train: int, valid: int) -> tuple[list[str], list[str]]:
    """Training phrases (repeats allowed) and held-out ones that never occur in training."""
    pool = sorted({phrase(rng) for _ in range(20000)})
    rng.shuffle(pool)
    held = set(pool[:valid])
    seen = [p for p in pool if p not in held]
    return [rng.choice(seen) for _ in range(train)], sorted(held)


def resynthesize(wav: np.ndarray) -> np.ndarray:
    """The speech as the vocoder makes it: log-mel frames (the TTS target's), then Griffin-Lim."""
    from ofac.runtime.codec.speech import SpeechFeatures, griffin_lim
    from ofac.runtime.preprocess.audio import log_mel

    features = SpeechFeatures()
    return griffin_lim(log_mel(wav, RATE, vars(features)).numpy(), features)


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "speech")
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--valid", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    cap = os.environ.get("OFAC_MAX_ROWS")
    if cap:
        args.train, args.valid = min(args.train, int(cap)), min(args.valid, int(cap))
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "force")}
    stamp = args.out / "settings.json"
    if not args.force and stamp.exists() and json.loads(stamp.read_text()) == settings:
        return args.out
    import soundfile as sf

    sys.path.insert(0, str(Path(__file__).parent))
    from speech import Speaker

    (args.out / "audio").mkdir(parents=True, exist_ok=True)
    train, valid = phrases(random.Random(args.seed), args.train, args.valid)
    rows = {"train": [], "valid": []}
    asr = {"train": [], "valid": []}
    with Speaker() as tts:
        for split, texts in (("train", train), ("valid", valid)):
            for i, text in enumerate(texts):
                wav, rate = tts.say(text, voice=VOICE, wpm=WPM)
                assert rate == RATE, rate
                wav = trim(wav).astype(np.float32) / 32768.0
                name = f"audio/{split}_{i}.flac"
                sf.write(args.out / name, wav, RATE)
                rows[split].append({"text": text, "phones": tts.phonemes(text, VOICE), "audio": name})
                asr[split].append({"audio": name, "text": text})
                if split == "train":
                    vocoded = f"audio/{split}_{i}_gl.flac"
                    sf.write(args.out / vocoded, resynthesize(wav), RATE)
                    asr[split].append({"audio": vocoded, "text": text})
    for split in rows:
        write(args.out / f"tts_{split}.jsonl", rows[split])
        write(args.out / f"asr_{split}.jsonl", asr[split])
    stamp.write_text(json.dumps(settings))
    return args.out


if __name__ == "__main__":
    print(main())
