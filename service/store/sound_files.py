"""Sound files: uploaded audio, converted once to what Asterisk plays as is.

Uploads in any format libsndfile reads (WAV, MP3, OGG/Vorbis/Opus, FLAC, at
any rate and channel count) are mixed to mono, resampled with soxr, and
written as raw G.711 u-law and A-law at 8 kHz (played on a G.711 trunk with
no transcoding at all) and as 16 kHz WAV (`.wav16`, for wideband trunks).
The original is never played, and nothing is decoded at call time.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from service.domain.refusals import Reason, Refused

# Extension Asterisk looks for -> (rate, libsndfile container, subtype).
FORMATS: dict[str, tuple[int, str, str]] = {
    "ulaw": (8000, "RAW", "ULAW"),
    "alaw": (8000, "RAW", "ALAW"),
    "wav16": (16000, "WAV", "PCM_16"),
}
MIN_SECONDS = 0.1


@dataclass(frozen=True)
class Converted:
    stem: str
    duration_ms: int
    source_format: str
    source_rate: int
    formats: list[str]


def _check_wav_complete(data: bytes) -> None:
    """libsndfile reads a cut-off WAV without complaint; its chunk sizes tell."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"data":
            if size != 0xFFFFFFFF and pos + 8 + size > len(data):
                raise Refused(
                    Reason.INVALID, f"the WAV file is truncated: {size} bytes of audio announced, "
                         f"{len(data) - pos - 8} present")
            return
        pos += 8 + size + (size & 1)
    raise Refused(Reason.INVALID, "the WAV file is truncated: no audio data chunk")


def decode(data: bytes, max_seconds: float) -> tuple[np.ndarray, int, str]:
    """Mono float samples, their rate, and the source format's name."""
    _check_wav_complete(data)
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as f:
            fmt, rate = f.format, f.samplerate
            if f.frames and f.frames / rate > max_seconds:
                raise Refused(Reason.INVALID, f"the audio is longer than {max_seconds:g} seconds")
            samples = f.read(dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as exc:
        raise Refused(
            Reason.UNSUPPORTED_MEDIA,
                f"not a supported audio file (WAV, MP3, OGG, Opus, FLAC): {exc}") from None
    except (RuntimeError, ValueError) as exc:
        raise Refused(Reason.INVALID, f"the audio could not be decoded: {exc}") from None
    mono = samples.mean(axis=1)
    seconds = len(mono) / rate
    if seconds < MIN_SECONDS:
        raise Refused(Reason.INVALID, f"the audio is shorter than {MIN_SECONDS} seconds")
    if seconds > max_seconds:
        raise Refused(Reason.INVALID, f"the audio is longer than {max_seconds:g} seconds")
    if not np.isfinite(mono).all():
        raise Refused(Reason.INVALID, "the audio contains invalid samples")
    return mono, rate, fmt


def convert(data: bytes, folder: Path, max_seconds: float, stem: str | None = None) -> Converted:
    """Decode `data` and write every playable format into `folder` (as `stem`,
    by default a new one)."""
    mono, rate, fmt = decode(data, max_seconds)
    stem = stem or uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for ext, (target_rate, container, subtype) in FORMATS.items():
            audio = mono if rate == target_rate else soxr.resample(mono, rate, target_rate, "HQ")
            audio = np.clip(audio, -1.0, 1.0)
            final = folder / f"{stem}.{ext}"
            tmp = folder / f".{stem}.{ext}.tmp"
            soundfile.write(tmp, audio, target_rate, format=container, subtype=subtype)
            # Asterisk may open the file at any moment: it only ever sees it whole.
            os.replace(tmp, final)
            written.append(final)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return Converted(stem, round(len(mono) * 1000 / rate), fmt, rate, list(FORMATS))


async def convert_async(data: bytes, folder: Path, max_seconds: float) -> Converted:
    # Decoding and resampling are CPU work: keep them off the event loop.
    return await asyncio.to_thread(convert, data, folder, max_seconds)


def remove(folder: Path, stem: str) -> None:
    for ext in FORMATS:
        (folder / f"{stem}.{ext}").unlink(missing_ok=True)


def account_folder(sounds_dir: str, account_id: int) -> Path:
    return Path(sounds_dir) / str(account_id)


def ensure_sounds_dir(sounds_dir: str) -> None:
    Path(sounds_dir).mkdir(parents=True, exist_ok=True)
