"""Sound files: uploaded audio, converted once to what Asterisk plays as is.

Uploads in any format libsndfile reads (WAV, MP3, OGG/Vorbis/Opus, FLAC, up
to the rate, channel and duration limits, checked on the header before any
decoding) are decoded in blocks, mixed to mono, resampled with soxr, and
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
from service.settings import Settings

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


@dataclass(frozen=True)
class Limits:
    """What an upload may declare and contain (the AMIVONO_MAX_SOUND_* settings)."""

    seconds: float
    rate: int
    channels: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_sound_seconds, settings.max_sound_rate,
                   settings.max_sound_channels)


# Frames decoded at a time: at 8 channels of float32, 1 MB per block, so one
# upload's memory is its bytes plus a few blocks, whatever its header claims.
BLOCK_FRAMES = 32768
UNKNOWN_FRAMES = 2**63 - 1


def check_header(channels: int, rate: int, frames: int, limits: Limits) -> None:
    """Refuse (422) what the container declares beyond the limits, before any
    sample is decoded. The declared frames may lie: decoding counts as well."""
    if not 1 <= channels <= limits.channels:
        raise Refused(Reason.INVALID, f"the audio has {channels} channels; "
                                      f"at most {limits.channels} allowed")
    if not 1 <= rate <= limits.rate:
        raise Refused(Reason.INVALID, f"the audio's sample rate is {rate} Hz; "
                                      f"at most {limits.rate} Hz allowed")
    if frames >= UNKNOWN_FRAMES:
        # libsndfile says SF_COUNT_MAX when the container does not tell (a FLAC
        # written to a pipe), and then fails to read its end.
        raise Refused(Reason.INVALID, "the audio does not declare its length "
                                      "(a stream-written FLAC?); re-encode it to a file")
    if frames / rate > limits.seconds:
        raise Refused(Reason.INVALID, f"the audio is longer than {limits.seconds:g} seconds")


def _open_source(data: bytes) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(io.BytesIO(data))
    except soundfile.LibsndfileError as exc:
        # error_string, not str(exc): that one names the Python object it read from.
        raise Refused(
            Reason.UNSUPPORTED_MEDIA,
            f"not a supported audio file (WAV, MP3, OGG, Opus, FLAC): {exc.error_string}",
        ) from None
    except (RuntimeError, ValueError) as exc:
        raise Refused(Reason.INVALID, f"the audio could not be decoded: {exc}") from None


class _Outputs:
    """Every playable format, written block by block: one streaming resampler
    per target rate (u-law and A-law share theirs), one writer per format."""

    def __init__(self, folder: Path, stem: str, token: str, source_rate: int) -> None:
        self.paths: list[Path] = []
        self.files: list[tuple[int, soundfile.SoundFile]] = []
        self.streams: dict[int, soxr.ResampleStream | None] = {}
        for ext, (target_rate, container, subtype) in FORMATS.items():
            path = folder / f".{stem}.{token}.{ext}.tmp"
            self.paths.append(path)
            self.files.append((target_rate, soundfile.SoundFile(
                path, "w", samplerate=target_rate, channels=1, format=container,
                subtype=subtype)))
            if target_rate not in self.streams:
                self.streams[target_rate] = (
                    None if source_rate == target_rate else
                    soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32",
                                        quality="HQ"))

    def write(self, mono: np.ndarray, last: bool = False) -> None:
        for target_rate, stream in self.streams.items():
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if len(out):
                out = np.clip(out, -1.0, 1.0)
                for rate, file in self.files:
                    if rate == target_rate:
                        file.write(out)

    def close(self) -> None:
        for _, file in self.files:
            file.close()


def convert(data: bytes, folder: Path, limits: Limits, stem: str | None = None) -> Converted:
    """Decode `data` in blocks and write every playable format into `folder` (as
    `stem`, by default a new one): the header is checked first, the frames are
    counted as they come. Temporary files are this call's own: a conversion to
    the same stem at the same time (two renders of the same speech) neither
    takes nor deletes them, and on failure only this call's files go."""
    _check_wav_complete(data)
    new_stem = stem is None
    stem = stem or uuid.uuid4().hex
    token = uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    outputs: _Outputs | None = None
    try:
        with _open_source(data) as source:
            fmt, rate = source.format, source.samplerate
            check_header(source.channels, rate, source.frames, limits)
            max_frames = int(limits.seconds * rate)
            outputs = _Outputs(folder, stem, token, rate)
            frames = 0
            try:
                # A plain read loop: it ends at the first empty read. libsndfile
                # stops at the declared length; the count guards a decoder that
                # would read past it.
                while len(block := source.read(BLOCK_FRAMES, dtype="float32",
                                               always_2d=True)):
                    frames += len(block)
                    if frames > max_frames:
                        raise Refused(Reason.INVALID, "the audio is longer than "
                                                      f"{limits.seconds:g} seconds")
                    mono = block.mean(axis=1, dtype=np.float32)
                    if not np.isfinite(mono).all():
                        raise Refused(Reason.INVALID, "the audio contains invalid samples")
                    outputs.write(mono)
            except (RuntimeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
                raise Refused(Reason.INVALID, f"the audio could not be decoded: {exc}") from None
        if frames / rate < MIN_SECONDS:
            raise Refused(Reason.INVALID, f"the audio is shorter than {MIN_SECONDS} seconds")
        outputs.write(np.zeros(0, dtype=np.float32), last=True)
        outputs.close()
        for path, ext in zip(outputs.paths, FORMATS, strict=True):
            # Asterisk may open the file at any moment: it only ever sees it whole.
            os.replace(path, folder / f"{stem}.{ext}")
    except BaseException:
        if outputs is not None:
            outputs.close()
        for path in folder.glob(f".{stem}.{token}.*.tmp"):  # also a half-made _Outputs's
            path.unlink(missing_ok=True)
        if new_stem:  # a stem given may be published by another conversion: not ours
            remove(folder, stem)
        raise
    return Converted(stem, round(frames * 1000 / rate), fmt, rate, list(FORMATS))


async def convert_async(data: bytes, folder: Path, limits: Limits) -> Converted:
    # Decoding and resampling are CPU work: keep them off the event loop.
    return await asyncio.to_thread(convert, data, folder, limits)


def remove(folder: Path, stem: str) -> None:
    for ext in FORMATS:
        (folder / f"{stem}.{ext}").unlink(missing_ok=True)


def account_folder(sounds_dir: str, account_id: int) -> Path:
    return Path(sounds_dir) / str(account_id)


def ensure_sounds_dir(sounds_dir: str) -> None:
    Path(sounds_dir).mkdir(parents=True, exist_ok=True)
