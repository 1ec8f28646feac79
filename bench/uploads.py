"""Peak memory of decoding one upload (service/store/sound_files.convert):
the 8-channel 96 kHz 600 s silent FLAC "bomb" (under 1 MB on the wire) and a
normal 3-minute stereo MP3. Both are generated here (cached in a temporary
folder); each is decoded in a fresh process, which reports its peak RSS
(VmHWM) before and after the decoding, and the seconds it took.

    bash bench/run.sh uploads
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "amivono-bench-uploads"


def make_bomb(path: Path) -> None:
    """600 s of silence, 96 kHz, 8 channels, FLAC: written in blocks."""
    block = np.zeros((96000 * 10, 8), dtype=np.int16)
    with soundfile.SoundFile(path, "w", 96000, 8, format="FLAC", subtype="PCM_16") as f:
        for _ in range(60):
            f.write(block)


def make_mp3(path: Path) -> None:
    """3 minutes of a stereo 440/660 Hz chord with a little noise, 44.1 kHz MP3."""
    rate, seconds = 44100, 180
    rng = np.random.default_rng(1)
    with soundfile.SoundFile(path, "w", rate, 2, format="MP3") as f:
        for start in range(0, seconds, 10):
            t = (np.arange(rate * 10) + start * rate) / rate
            left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(len(t))
            right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.01 * rng.standard_normal(len(t))
            f.write(np.column_stack([left, right]))


def peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark (ru_maxrss would carry the
    parent's over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(path: Path) -> dict[str, float]:
    """Runs in the child: decode one file with the gateway's limits."""
    sys.path.insert(0, str(ROOT))
    from service.settings import Settings
    from service.store import sound_files

    settings = Settings()
    limits = sound_files.Limits(settings.max_sound_seconds, settings.max_sound_rate,
                                settings.max_sound_channels)
    data = path.read_bytes()
    before = peak_rss_mb()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        converted = sound_files.convert(data, Path(out), limits)
    return {"seconds": time.perf_counter() - start,
            "rss_before_mb": before,
            "peak_rss_mb": peak_rss_mb(),
            "duration": converted.duration_ms / 1000}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    CACHE.mkdir(exist_ok=True)
    files = {"bomb: FLAC 8 ch 96 kHz 600 s silence": (CACHE / "bomb.flac", make_bomb),
             "normal: MP3 2 ch 44.1 kHz 180 s": (CACHE / "normal.mp3", make_mp3)}
    print(f"{'upload':<40} {'bytes':>10} {'decode s':>9} {'RSS before':>11} {'peak RSS':>9}")
    for label, (path, make) in files.items():
        if not path.exists():
            make(path)
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                             capture_output=True, text=True, env=os.environ).stdout
        got = json.loads(out)
        print(f"{label:<40} {path.stat().st_size:>10} {got['seconds']:>9.1f} "
              f"{got['rss_before_mb']:>8.0f} MB {got['peak_rss_mb']:>6.0f} MB")


if __name__ == "__main__":
    main()
