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
