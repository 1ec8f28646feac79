"""Text to speech: rendered once, offline, into the formats uploads are
converted to (service/store/sound_files.py), and cached.

The engine is espeak-ng (a Debian package; scripts/setup.sh installs it). A
text is rendered when the message is created (before its transaction: no
pooled connection waits on the engine), never at call time, into
<sounds_dir>/speech/<stem>.{ulaw,alaw,wav16}, where the stem is a hash of
(engine version, language, text): the same words are rendered once however
many messages speak them, and a new engine version renders them anew.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.domain.voice_prompts import LANGUAGES
from service.settings import Settings
from service.store import sound_files
from service.store.database import Executor
from service.store.queries import queries

FOLDER = "speech"
ULAW_BYTES_PER_SECOND = 8000


class SpeechUnavailable(Exception):
    """The engine is missing or failed: the request is refused, no call is made."""


@dataclass(frozen=True)
class Speech:
    stem: str
    duration_ms: int


@functools.lru_cache(maxsize=8)
def engine_version(engine: str) -> str | None:
    """The engine's version line, or None when it is not installed."""
    try:
        out = subprocess.run([engine, "--version"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split(" Data at:")[0].strip() or None


def stem_for(version: str, language: str, text: str) -> str:
    return hashlib.sha256(f"{version}\0{language}\0{text}".encode()).hexdigest()[:32]


def folder(settings: Settings) -> Path:
    return Path(settings.sounds_dir) / FOLDER


def media(settings: Settings, stem: str) -> str:
    """The rendered speech as Asterisk names it."""
    return f"sound:{settings.sounds_dir_for_asterisk}/{FOLDER}/{stem}"


def seconds(settings: Settings, stem: str) -> float:
    """The rendered speech's length (0 when it is gone)."""
    try:
        size = (folder(settings) / f"{stem}.ulaw").stat().st_size
    except OSError:
        return 0.0
    return size / ULAW_BYTES_PER_SECOND


def _version(settings: Settings) -> str:
    engine = settings.speech_engine
    version = engine_version(engine)
    if version is None:
        raise SpeechUnavailable(
            f"text-to-speech is not available on this server ({engine!r} is not installed):"
            " send an uploaded file instead")
    return version


def render(text: str, language: str, settings: Settings) -> Speech:
    """The speech of `text`, rendered now or found rendered before. Two renders
    of the same words (two processes) each write their own temporary files and
    publish them whole with os.replace: the same sound, harmless to repeat."""
    engine = settings.speech_engine
    stem = stem_for(_version(settings), language, text)
    target = folder(settings)
    done = [target / f"{stem}.{ext}" for ext in sound_files.FORMATS]
    if all(p.exists() for p in done):
        return Speech(stem, round(done[0].stat().st_size * 1000 / ULAW_BYTES_PER_SECOND))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".render-") as tmp:
        wav = Path(tmp) / "speech.wav"
        try:
            # The text on stdin (-b 1: UTF-8): nothing in it can be read as an option.
            subprocess.run([engine, "-b", "1", "-v", LANGUAGES[language].voice, "-w",
                            str(wav), "--stdin"], input=text.encode(), capture_output=True,
                           timeout=120, check=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
        except (OSError, subprocess.SubprocessError) as exc:
            raise SpeechUnavailable(f"text-to-speech failed: {exc}") from None
        converted = sound_files.convert(wav.read_bytes(), target,
                                        sound_files.Limits.from_settings(settings), stem=stem)
    return Speech(stem, converted.duration_ms)


# Renders in progress in this process, by stem, with how many wait on each:
# the same words asked for at once are rendered once, the others wait for it.
_rendering: dict[str, tuple[asyncio.Lock, int]] = {}


async def render_once(text: str, language: str, settings: Settings) -> Speech:
    """render, off the event loop and once per stem at a time in this process."""
    version = await asyncio.to_thread(_version, settings)
    stem = stem_for(version, language, text)
    lock, users = _rendering.get(stem, (asyncio.Lock(), 0))
    _rendering[stem] = (lock, users + 1)
    try:
        async with lock:
            return await asyncio.to_thread(render, text, language, settings)
    finally:
        lock, users = _rendering[stem]
        if users == 1:
            del _rendering[stem]
        else:
            _rendering[stem] = (lock, users - 1)


# Speech rendered for one request before its transaction, by (language, text).
Rendered = dict[tuple[str, str], Speech]


async def render_all(wanted: list[tuple[str, str, str]], settings: Settings,
                     refuse: Callable[[str, str], Exception]) -> Rendered:
    """Render each (field, language, text) before any database connection is
    taken (espeak may take long); a failure is `refuse(field, message)`."""
    out: Rendered = {}
    for field, language, text in wanted:
        if (language, text) not in out:
            try:
                out[language, text] = await render_once(text, language, settings)
            except SpeechUnavailable as exc:
                raise refuse(field, str(exc)) from None
    return out


async def keep(conn: Executor, rendered: Rendered, text: str, language: str,
               settings: Settings) -> str:
    """Record speech rendered before the transaction, so messages can refer to it."""
    speech = rendered.get((language, text))
    if speech is None:
        raise RuntimeError(f"speech in {language!r} not rendered before the transaction")
    await queries.speech_renders.keep(
        conn, stem=speech.stem, language=language, engine=settings.speech_engine,
        duration_ms=speech.duration_ms)
    return speech.stem
