"""Signals without speech for ``wsp bench nonspeech`` and the non-speech tests: the target is that nothing
is ever committed on any of them, with the VAD and without it (then the guards alone stand).

What Whisper invents from noise depends on the processor's floating-point path, so one signal proves
little: each kind comes in several seeds, and the kinds cover what a venue's microphone hears between
words: hiss (white), room and fan noise (pink), a crowd talking (babble, made from reversed speech so that
it sounds like voices but says no words), mains hum, and music (tones with harmonics, changing like a
melody).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from common.audio import SAMPLE_RATE, load_audio

KINDS = ("silence", "white", "pink", "babble", "hum", "music")
RANDOM_KINDS = frozenset({"white", "pink", "babble", "music"})
"""Kinds that differ from seed to seed (the others are the same signal every time)."""
LEVEL_RMS = 0.08
"""Loudness of every signal but silence: a normal speaking level, so the VAD and the model hear it."""
BABBLE_VOICES = 4
HUM_HZ = (50.0, 100.0, 150.0, 250.0)
"""Mains hum and its strongest harmonics."""
NOTE_S = 0.25
SCALE_HZ = (220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0, 440.0)


def _bundled(name: str) -> Path:
    return Path(str(resources.files("common") / "samples" / name))


def _at_level(signal: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) or 1.0
    return (signal * (LEVEL_RMS / rms)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(frequencies[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Several reversed voices on top of each other, each from a random place in the bundled speech."""
    speech = np.concatenate([load_audio(_bundled("ja_concert.wav")), load_audio(_bundled("en_jfk.wav"))])
    reversed_speech = speech[::-1]
    out = np.zeros(n, dtype=np.float64)
    for _ in range(BABBLE_VOICES):
        start = int(rng.integers(0, max(1, reversed_speech.size - n)))
        voice = np.resize(reversed_speech[start:], n)
        out += voice / BABBLE_VOICES
    return out


def _music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A melody of notes with harmonics and a soft attack: what Whisper hears in an intermission."""
    t = np.arange(n) / SAMPLE_RATE
    notes = rng.choice(SCALE_HZ, size=int(n / SAMPLE_RATE / NOTE_S) + 1)
    frequency = notes[(t // NOTE_S).astype(int)]
    phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
    envelope = np.minimum(1.0, (t % NOTE_S) / 0.02) * np.exp(-3.0 * (t % NOTE_S))
    tone = np.zeros(n)
    for harmonic in (1, 2, 3, 4):
        tone += np.sin(harmonic * phase) / harmonic
    return envelope * tone


def signal(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of 16 kHz mono float32 audio of one kind, the same for the same seed."""
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros(n, dtype=np.float32)
    if kind == "white":
        return _at_level(rng.standard_normal(n))
    if kind == "pink":
        return _at_level(_pink(n, rng))
    if kind == "babble":
        return _at_level(_babble(n, rng))
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        hum = np.zeros(n)
        for i, frequency in enumerate(HUM_HZ):
            hum += np.sin(2 * np.pi * frequency * t) / (i + 1)
        return _at_level(hum)
    if kind == "music":
        return _at_level(_music(n, rng))
    raise ValueError(f"unknown non-speech kind {kind!r}; one of {', '.join(KINDS)}")


def signals(seconds: float, seeds: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """(name, audio) for every kind, ``seeds`` of each kind that varies: ``pink-1``, ``hum``, ..."""
    for kind in KINDS:
        for seed in range(seeds if kind in RANDOM_KINDS else 1):
            yield (f"{kind}-{seed}" if kind in RANDOM_KINDS else kind), signal(kind, seconds, seed)
