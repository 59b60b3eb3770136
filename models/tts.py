"""Offline speech synthesis with eSpeak NG (the library and voices ship in the ``espeakng-loader`` wheel).

Used to make a small synthetic STSP set whose sentiment is audible: pitch, pitch range and rate
differ per sentiment. The library keeps global state, so calls are serialised by a lock.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Prosody:
    """eSpeak's knobs: words per minute, base pitch (0-99) and pitch range (0-99)."""

    rate: int = 160
    pitch: int = 50
    pitch_range: int = 50


class EspeakSynth:
    """Text → float32 mono audio at eSpeak's rate (22,050 Hz)."""

    _lock = threading.Lock()
    _instance: EspeakSynth | None = None

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise RuntimeError("eSpeak NG failed to initialise")
        self.sample_rate = int(rate)
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it later
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def shared(cls) -> EspeakSynth:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, prosody: Prosody = Prosody(), voice: str = "en-us") -> np.ndarray:
        """The utterance as float32 in [-1, 1]; ValueError for an empty text or unknown voice."""
        if not text.strip():
            raise ValueError("nothing to say: empty text")
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            lib.espeak_SetParameter(_RATE, prosody.rate, 0)
            lib.espeak_SetParameter(_PITCH, prosody.pitch, 0)
            lib.espeak_SetParameter(_RANGE, prosody.pitch_range, 0)
            encoded = text.encode()
            self._chunks = []
            lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            lib.espeak_Synchronize()
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0
