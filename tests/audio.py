"""Test audio: tones to upload, and what a recording really contains."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile


def tone(freq: float, seconds: float, fmt: str = "WAV", rate: int = 44100,
         channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    data = np.column_stack([wave] * channels) if channels > 1 else wave
    buf = io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS", "MP3": None}[fmt]
    soundfile.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


@dataclass(frozen=True)
class Heard:
    frequency: float  # dominant frequency of the loud part, Hz
    seconds: float    # length of the loud part


def analyse(path: str, threshold: float = 0.05) -> Heard:
    samples, rate = soundfile.read(path)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    loud = np.where(np.abs(samples) > threshold)[0]
    if len(loud) == 0:
        return Heard(0.0, 0.0)
    part = samples[loud[0]:loud[-1] + 1]
    padded = np.zeros(max(len(part), rate * 4))  # zero-padding: 0.25 Hz bins
    padded[:len(part)] = part * np.hanning(len(part))
    spectrum = np.abs(np.fft.rfft(padded))
    freqs = np.fft.rfftfreq(len(padded), 1 / rate)
    return Heard(float(freqs[np.argmax(spectrum)]), len(part) / rate)


def similarity(recording: np.ndarray, reference: np.ndarray) -> float:
    """The best normalised cross-correlation of `reference` within `recording`
    (1.0: the recording contains exactly that sound, at some delay)."""
    n = 1 << int(np.ceil(np.log2(len(recording) + len(reference))))
    corr = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(reference, n)), n)
    corr = corr[:len(recording)]
    energy = np.concatenate([[0.0], np.cumsum(recording ** 2)])
    lags = np.arange(len(recording))
    window = energy[np.minimum(lags + len(reference), len(recording))] - energy[lags]
    score = corr / (np.linalg.norm(reference) * np.sqrt(np.maximum(window, 1e-12)))
    return float(score.max())


def loud_seconds(samples: np.ndarray, rate: int = 8000, threshold: float = 0.02) -> float:
    """From the first to the last sample above `threshold`."""
    loud = np.where(np.abs(samples) > threshold)[0]
    return (loud[-1] - loud[0]) / rate if len(loud) else 0.0
