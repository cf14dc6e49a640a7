"""Text to phonemes with espeak-ng (the `espeakng-loader` wheel: the library and its voice data,
no system package, no network), for `text_phone` ASR targets and the zoo's phone columns.

The library is process-global: one handle serves every caller in the process (the zoo's speech
synthesis too, `library()`).  No torch."""
from __future__ import annotations

import ctypes
import functools
import threading

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_STRESS = str.maketrans("", "", "',")  # espeak's primary and secondary stress marks
_LOCK = threading.Lock()
_LIB: tuple | None = None  # (library, sample rate)


class PhonemizerError(RuntimeError):
    pass


def library() -> tuple[ctypes.CDLL, int]:
    """The espeak-ng library, started once per process, and its sample rate."""
    global _LIB
    with _LOCK:
        if _LIB is None:
            try:
                import espeakng_loader
            except ImportError:
                raise PhonemizerError("phonemes need espeak-ng: pip install espeakng-loader") from None
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
            if rate <= 0:
                raise PhonemizerError(f"espeak-ng did not start (espeak_Initialize returned {rate})")
            lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
            lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            _LIB = (lib, rate)
        return _LIB


@functools.lru_cache(maxsize=65536)
def phonemes(text: str, voice: str = "en") -> str:
    """espeak-ng's phonemes of `text` (its ASCII mnemonics), space-separated, with `|` between
    words: "three one" -> "T r 'i: | w ,0 n"."""
    lib, _ = library()
    with _LOCK:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise PhonemizerError(f"espeak-ng has no voice {voice!r}")
        data = ctypes.c_char_p(text.encode())
        cursor = ctypes.c_void_p(ctypes.cast(data, ctypes.c_void_p).value)
        words = []
        while cursor.value:  # one clause per call; the cursor moves on (NULL at the end)
            out = lib.espeak_TextToPhonemes(ctypes.byref(cursor), 0, ord("_") << 8)  # "_" between phonemes
            words += (out or b"").decode().split()
    return " | ".join(" ".join(p for p in w.split("_") if p) for w in words)


def ctc_phones(text: str, voice: str = "en") -> list[str]:
    """The phonemes a CTC loss is trained on: without stress marks or word boundaries (what the
    audio says, not how the dictionary accents it)."""
    out = []
    for p in phonemes(text, voice).split():
        p = p.translate(_STRESS)
        if p and p != "|":
            out.append(p)
    return out
