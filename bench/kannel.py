"""Kannel, the peer of the SMS benches: bearerbox with one fake SMSC, smsbox's
sendsms HTTP interface, and fakesmsc receiving what it delivers. Loopback only."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from stack import LAUNCH, SPEC_FROM, SPEC_TO, WORK_DIR, SetupError, wait_until

from sandbox.processes import Proc, port_free, wait_port_free

# Kannel's ports (bearerbox admin, smsbox link, fake SMSC, smsbox sendsms).
# Below Linux's ephemeral range (32768-60999), so no client socket holds them.
KANNEL_ADMIN_PORT = 31000
KANNEL_BOX_PORT = 31001
KANNEL_SMSC_PORT = 31002
KANNEL_SENDSMS_PORT = 31013
KANNEL_USER = "bench"
KANNEL_PASSWORD = "bench-secret"  # noqa: S105  (a loopback-only test gateway)
SENDSMS = f"http://127.0.0.1:{KANNEL_SENDSMS_PORT}"

FAKESMSC = "/usr/lib/kannel/test/fakesmsc"


def kannel_conf(folder: Path, store: bool = False) -> Path:
    """A minimal kannel.conf: bearerbox with one fake SMSC, an smsbox with the
    sendsms HTTP interface and one sendsms-user; loopback only."""
    folder.mkdir(parents=True, exist_ok=True)
    store_lines = ""
    if store:
        (folder / "store").mkdir(exist_ok=True)
        store_lines = f"store-type = spool\nstore-location = {folder}/store\n"
    conf = folder / "kannel.conf"
    conf.write_text(f"""\
group = core
admin-port = {KANNEL_ADMIN_PORT}
admin-interface = 127.0.0.1
admin-password = {KANNEL_PASSWORD}
admin-allow-ip = 127.0.0.1
smsbox-port = {KANNEL_BOX_PORT}
box-allow-ip = 127.0.0.1
log-level = 3
{store_lines}
group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {KANNEL_SMSC_PORT}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {KANNEL_BOX_PORT}
sendsms-port = {KANNEL_SENDSMS_PORT}
sendsms-interface = 127.0.0.1
log-level = 3

group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASSWORD}
""")
    return conf


@dataclass
class Kannel:
    """bearerbox + fakesmsc + smsbox. fakesmsc's output goes through a pipe
    read by a thread that stamps each received message on arrival (its own
    log has whole seconds only)."""

    store: bool = False
    procs: list[Proc] = field(default_factory=list)
    received: list[tuple[float, str]] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def sendsms_base(self) -> str:
        return f"{SENDSMS}/cgi-bin/sendsms"

    def sendsms_path(self, text: str, to: str = SPEC_TO) -> str:
        query = urlencode({"username": KANNEL_USER, "password": KANNEL_PASSWORD,
                           "from": SPEC_FROM, "to": to, "text": text})
        return f"/cgi-bin/sendsms?{query}"

    def start(self) -> None:
        for port in (KANNEL_ADMIN_PORT, KANNEL_BOX_PORT, KANNEL_SMSC_PORT, KANNEL_SENDSMS_PORT):
            wait_port_free(port, "Kannel")
        folder = WORK_DIR / "kannel"
        shutil.rmtree(folder, ignore_errors=True)
        conf = kannel_conf(folder, self.store)
        bearerbox = LAUNCH.program("kannel-bearerbox", ["bearerbox", "-v", "3", str(conf)])
        self.procs.append(bearerbox)
        wait_until(lambda: not port_free(KANNEL_SMSC_PORT), 20, "bearerbox's fake SMSC port")
        fake = LAUNCH.program("kannel-fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r",
                                                  str(KANNEL_SMSC_PORT), "-m", "0",
                                                  "1 2 text nop"], stdout_pipe=True)
        self.procs.append(fake)
        self._reader = threading.Thread(target=self._read, args=(fake,), daemon=True)
        self._reader.start()
        smsbox = LAUNCH.program("kannel-smsbox", ["smsbox", "-v", "3", str(conf)])
        self.procs.append(smsbox)
        wait_until(lambda: not port_free(KANNEL_SENDSMS_PORT), 20, "smsbox's sendsms port")

        # The fake SMSC must be online, or sendsms answers "3: Queued for later delivery".
        def accepted() -> bool:
            for p in self.procs:
                if not p.alive():
                    raise SetupError(f"{p.name} exited:\n{p.log()[-2000:]}")
            try:
                r = httpx.get(self.sendsms_base, params={
                    "username": KANNEL_USER, "password": KANNEL_PASSWORD, "from": SPEC_FROM,
                    "to": SPEC_TO, "text": "bench-warmup"}, timeout=3)
            except httpx.HTTPError:
                return False
            return r.status_code == 202 and r.text.startswith("0: Accepted")

        wait_until(accepted, 30, "Kannel to answer '0: Accepted for delivery'", interval=0.5)

    _GOT = re.compile(rb"Got message \d+: <(.*)>")

    def _read(self, proc: Proc) -> None:
        assert proc.proc.stdout is not None
        for line in proc.proc.stdout:
            now = time.time()
            match = self._GOT.search(line)
            if match:
                self.received.append((now, match.group(1).decode(errors="replace")))
            else:
                with contextlib.suppress(ValueError):  # the log closed at stop
                    proc.log_file.write(line)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(signal.SIGINT if proc.name != "kannel-fakesmsc" else signal.SIGTERM)
        self.procs.clear()
