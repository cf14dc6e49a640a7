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

from ofac.runtime.preprocess.g2p import PhonemizerError, library, phonemes

_RATE, _PITCH = 1, 3  # espeak_PARAMETER: espeakRATE (words per minute), espeakPITCH (0-100)
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

VOICES = ("en", "en+f3", "en+m3", "en-us", "en+f2", "en+m7")


class SpeechError(RuntimeError):
    pass


class Speaker:
    """The zoo's voice: espeak-ng, whose library is process-global (ofac's phonemizer shares the
    one handle); use one Speaker at a time."""

    def __init__(self):
        try:
            self.lib, self.rate = library()
        except PhonemizerError as err:
            raise SpeechError(str(err)) from None
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
        """espeak-ng's phonemes of `text`: "three one" -> "T r 'i: | w ,0 n" (ofac's phonemizer)."""
        try:
            return phonemes(text, voice)
        except PhonemizerError as err:
            raise SpeechError(str(err)) from None

    def close(self) -> None:
        """Nothing to free: the library stays up for the process (ofac's phonemizer uses it too)."""
        self.lib.espeak_SetSynthCallback(None)

    def __enter__(self) -> "Speaker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
