"""Text to speech with espeak-ng, for the zoo's speech-to-text task.

The espeak-ng library and its voice data come from the `espeakng-loader` wheel (PyPI; no
system package, no network at run time); this module drives the library's C API through
ctypes in synchronous mode and collects the 16-bit samples its callback hands over.

    with Speaker() as tts:
        wav, rate = tts.say("three one four", voice="en+f3", wpm=160, pitch=60)   # int16, 22050 Hz
"""
from __future__ import annotations

import ctypes

import numpy as np

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _PITCH = 1, 3  # espeak_PARAMETER: espeakRATE (words per minute), espeakPITCH (0-100)
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

VOICES = ("en", "en+f3", "en+m3", "en-us", "en+f2", "en+m7")


class SpeechError(RuntimeError):
    pass


class Speaker:
    """One espeak-ng instance (the library is process-global: use one Speaker at a time)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise SpeechError("the speech task needs espeak-ng: pip install espeakng-loader") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise SpeechError(f"espeak-ng did not start (espeak_Initialize returned {self.rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # go on

    def say(self, text: str, voice: str = "en", wpm: int = 170, pitch: int = 50) -> tuple[np.ndarray, int]:
        """The speech of `text` as int16 samples, and the sample rate."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SpeechError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(wpm), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        data = text.encode()
        self._chunks = []
        status = self.lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise SpeechError(f"espeak-ng could not say {text!r} (status {status})")
        return np.concatenate(self._chunks), self.rate

    def phonemes(self, text: str, voice: str = "en") -> str:
        """espeak-ng's phonemes of `text` (its ASCII mnemonics), space-separated, with `|`
        between words: "three one" -> "T r 'i: | w '0 n"."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SpeechError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        data = ctypes.c_char_p(text.encode())
        cursor = ctypes.c_void_p(ctypes.cast(data, ctypes.c_void_p).value)
        words = []
        while cursor.value:  # one clause per call; the cursor moves on (NULL at the end)
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(cursor), 0, ord("_") << 8)  # "_" between phonemes
            words += (out or b"").decode().split()
        return " | ".join(" ".join(p for p in w.split("_") if p) for w in words)

    def close(self) -> None:
        self.lib.espeak_Terminate()

    def __enter__(self) -> "Speaker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
