"""The Debian packages a bench needs (bench/debian-packages.txt), installed
with apt-get when missing."""

from __future__ import annotations

import os
import subprocess

from stack import BENCH_DIR, SetupError, say


def debian_packages(bench: str) -> list[str]:
    """The Debian packages `bench` needs, from bench/debian-packages.txt."""
    out = []
    for line in (BENCH_DIR / "debian-packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, benches = line.partition(":")
        if bench in benches.split():
            out.append(name.strip())
    return out


def installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                            capture_output=True, text=True).stdout
    return status == "install ok installed"


def ensure_debian_packages(bench: str) -> None:
    missing = [p for p in debian_packages(bench) if not installed(p)]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SetupError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
