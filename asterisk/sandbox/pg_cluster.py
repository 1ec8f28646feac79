"""A PostgreSQL cluster of our own for fault tests: initdb in a temporary
folder, its own loopback port, started, stopped and restarted at will, and
removed at the end. Restarting it disturbs nothing else on the machine (the
shared PostgreSQL on 5432 is never touched).

Debian's server binaries (postgresql-15) are used directly; initdb and the
server refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15)]


def bin_dir() -> Path:
    for path in BIN_DIRS:
        if (path / "initdb").exists():
            return path
    raise FileNotFoundError("no PostgreSQL server binaries (Debian package postgresql-15)")


class Cluster:
    """One throw-away cluster on 127.0.0.1:`port`, trusting local connections."""

    def __init__(self, port: int, user: str = "postgres") -> None:
        self.port = port
        self.bin = bin_dir()
        self.as_user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix=f"amivono-pg{port}-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = user
        if self.as_user is not None:
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_user is not None:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr[-2000:]}"
                               f"{self.server_log()[-2000:]}")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def init(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--locale=C.UTF-8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 200\nshared_buffers = 64MB\n")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session (what a restart does to clients);
        `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
