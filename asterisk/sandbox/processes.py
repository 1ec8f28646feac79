"""The gateway's own processes in the sandbox, for the tests and the benchmarks
alike: an `amivono` subcommand (or any program) run as its own process with
its output in a log file, the waits for it to be ready, and port checks.

Production code never starts itself this way; an operator's service manager
does. This is the harness around it.
"""

from __future__ import annotations

import asyncio
import os
import signal as signals
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx


class NotReady(AssertionError):
    """A process or a condition did not come up in time, or the process exited
    first. An AssertionError, so a test reports it as a failed expectation."""


def amivono_argv(*args: str, python: str = sys.executable) -> list[str]:
    """The command line of `amivono <args>` (the `service` package's CLI)."""
    return [python, "-m", "service", *args]


class Proc:
    """A background process whose output goes to `<log_dir>/<name>.log`.

    The log is appended to, and `log()` returns only what this run wrote, so a
    readiness line left in a reused log by an earlier run never counts."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        own_session: bool = False,
        stdout_pipe: bool = False,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log_file: IO[bytes] = self.log_path.open("ab")
        # A header tells runs apart for whoever reads the file; it is before
        # the offset, so log() leaves it out.
        header = f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n"
        self.log_file.write(header.encode())
        self.log_file.flush()
        self.log_start = self.log_file.tell()
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self.log_file,
            stderr=subprocess.STDOUT,
            # Its own session keeps a Ctrl-C in the terminal from reaching it
            # before the caller's clean-up stops things in order.
            start_new_session=own_session,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """What this process wrote since it started (not earlier runs')."""
        with self.log_path.open("rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig: int = signals.SIGTERM, timeout: float = 15.0) -> None:
        """`sig`, then SIGKILL if it is still running after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log_file.close()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise NotReady(f"{self.name} exited:\n{self.log()[-3000:]}")

    def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        """Block until this run's log contains `text` (its readiness line)."""

        def seen() -> bool:
            self.check_alive()
            return text in self.log()

        wait_until(seen, timeout, f"{self.name} to log {text!r}")


@dataclass(frozen=True)
class Launcher:
    """How one harness (the tests, the benchmarks) starts processes: where
    their logs go, which Python runs `amivono`, from which folder, and whether
    each gets its own session."""

    log_dir: Path
    python: str = sys.executable
    cwd: Path | None = None
    own_session: bool = False

    def program(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                stdout_pipe: bool = False) -> Proc:
        return Proc(name, argv, self.log_dir, env=env, cwd=self.cwd,
                    own_session=self.own_session, stdout_pipe=stdout_pipe)

    def amivono(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        """`amivono <args>` as its own process, as an operator would run it."""
        return self.program(name, amivono_argv(*args, python=self.python), env)

    def dispatcher(self, name: str, env: dict[str, str] | None = None,
                   ready: str | None = None, timeout: float = 60.0) -> Proc:
        """`amivono dispatcher` called `name` (its attempts carry the name), its
        log dispatcher-<name>.log; with `ready`, once its log has that line."""
        proc = self.amivono(f"dispatcher-{name}", "dispatcher",
                            env={"AMIVONO_DISPATCHER_NAME": name, **(env or {})})
        if ready is not None:
            try:
                proc.wait_for_line(ready, timeout)
            except BaseException:
                proc.stop()  # one that never came up must not keep running unseen
                raise
        return proc

    async def api(self, name: str, port: int, env: dict[str, str] | None = None,
                  timeout: float = 20.0) -> Proc:
        """`amivono api` on `port`, once it answers /healthz."""
        proc = self.amivono(name, "api", env={"AMIVONO_API_PORT": str(port), **(env or {})})
        try:
            await wait_healthy(f"http://127.0.0.1:{port}", proc, timeout)
        except BaseException:
            proc.stop()  # one that never came up must not hold the port for the next
            raise
        return proc


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NotReady(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise NotReady(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_healthy(base: str, proc: Proc, timeout: float = 20.0) -> None:
    """Wait until the API at `base` answers /healthz with 200: serving
    requests, which its "listening" log line alone does not show."""
    async with httpx.AsyncClient() as client:

        async def up() -> bool:
            proc.check_alive()
            try:
                return (await client.get(f"{base}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout, what=f"{proc.name} to answer")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, what: str, timeout: float = 10.0) -> None:
    """A port may be held a moment by a socket of a process that just stopped."""
    try:
        wait_until(lambda: port_free(port), timeout, f"{what} port {port} to be free", 0.5)
    except NotReady:
        raise NotReady(f"{what} port {port} is taken: is another run using it?") from None
