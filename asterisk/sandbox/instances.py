"""The Asterisk instances of the sandbox: the gateway and the carrier simulator,
and, when asked (`amivono asterisk up --gateways 2`), more gateway nodes
(gateway2, gateway3, ...) trunked to the same carrier.

`asterisk/install.sh` provides the binary (the system's, or a cached Debian
sid root). Each instance gets its own folder, filled from the templates in
`asterisk/templates/` and `dialplan/` with values from the settings, and its
own ports, all on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.settings import PROJECT_DIR, SandboxSettings

TEMPLATES = PROJECT_DIR / "asterisk" / "templates"
DIALPLANS = PROJECT_DIR / "dialplan"
INSTANCES = ("gateway", "carrier")
MAX_GATEWAYS = 4  # their ports sit between the first gateway's and the trunk's


def gateway_names(count: int) -> list[str]:
    """The gateway nodes of a sandbox with `count` of them: gateway, gateway2, ..."""
    if not 1 <= count <= MAX_GATEWAYS:
        raise SandboxError(f"the sandbox runs 1 to {MAX_GATEWAYS} gateways, not {count}")
    return ["gateway"] + [f"gateway{n}" for n in range(2, count + 1)]


def gateway_index(name: str) -> int:
    """0 for 'gateway', 1 for 'gateway2', ...; -1 for anything else."""
    if name == "gateway":
        return 0
    if name.startswith("gateway") and name[7:].isdigit() and 2 <= int(name[7:]) <= MAX_GATEWAYS:
        return int(name[7:]) - 1
    return -1


def gateway_ports(settings: SandboxSettings, index: int) -> dict[str, int]:
    """A gateway node's SIP, ARI/HTTP and AMI ports: the first gateway's plus
    2 per node (odd offsets are the carrier's), and its own RTP range."""
    rtp = 20000 if index == 0 else 21000 + 1000 * index
    return {"sip_port": settings.sip_port + 2 * index,
            "http_port": settings.http_port + 2 * index,
            "ami_port": settings.ami_port + 2 * index,
            "rtp_start": rtp, "rtp_end": rtp + 999}


def ari_url_of(settings: SandboxSettings, name: str) -> str:
    """The ARI URL of a sandbox gateway node, as a dispatcher reaches it."""
    port = gateway_ports(settings, gateway_index(name))["http_port"]
    return f"http://127.0.0.1:{port}/ari"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class Runtime:
    """Where the asterisk binary lives: '' for the system, else a chroot."""

    root: str

    @classmethod
    def install(cls) -> Runtime:
        out = (
            subprocess.run(
                ["bash", str(PROJECT_DIR / "asterisk" / "install.sh")],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ},
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        kind, _, root = out.partition(" ")
        return cls(root if kind == "chroot" else "")

    def outside(self, inner: str) -> Path:
        """A path inside the Asterisk root, as this process sees it."""
        return Path(self.root + inner) if self.root else Path(inner)

    def command(self, *args: str) -> list[str]:
        base = ["chroot", self.root] if self.root else []
        return [*base, "/usr/sbin/asterisk", *args]

    def moddir(self) -> str:
        for candidate in (
            "/usr/lib/x86_64-linux-gnu/asterisk/modules",
            "/usr/lib/aarch64-linux-gnu/asterisk/modules",
            "/usr/lib/asterisk/modules",
        ):
            if self.outside(candidate).is_dir():
                return candidate
        found = sorted(self.outside("/usr/lib").glob("**/asterisk/modules"))
        if not found:
            raise SandboxError("no Asterisk modules folder found")
        return "/" + str(found[0].relative_to(self.outside("/")))

    def mount_proc(self) -> None:
        if self.root and not self.outside("/proc/self").exists():
            subprocess.run(["mount", "-t", "proc", "proc", str(self.outside("/proc"))], check=True)

    def share(self, folder: str) -> None:
        """Make a host folder visible to Asterisk at the same path (a bind
        mount into the root), so the gateway plays the API's sound files."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        if not self.root:
            return
        target = self.outside(folder)
        target.mkdir(parents=True, exist_ok=True)
        if str(target) not in Path("/proc/mounts").read_text().split():
            subprocess.run(["mount", "--bind", folder, str(target)], check=True)


def instance_values(name: str, settings: SandboxSettings, runtime: Runtime) -> dict[str, str]:
    common = {
        "instance": name,
        "dir": f"{settings.run_dir}/{name}",
        "sms_inbox": settings.sms_inbox or "/dev/null",
        "moddir": runtime.moddir(),
        "bind": settings.asterisk_bind,
        "ari_user": settings.ari_user,
        "ari_password": settings.ari_password,
        "ami_user": settings.ami_user,
        "ami_permit": settings.ami_permit,
        "ami_password": settings.ami_password,
        "trunk_endpoint": settings.trunk_endpoint,
        "trunk_host": settings.trunk_host,
        "trunk_port": str(settings.trunk_port),
        "trunk_user": settings.trunk_user,
        "trunk_password": settings.trunk_password,
        "gateway_sip_port": str(settings.sip_port),
        "gateway_host": settings.gateway_host,
        "fastagi_host": settings.fastagi_host,
        "fastagi_port": str(settings.fastagi_port),
    }
    if gateway_index(name) >= 0:
        ports = gateway_ports(settings, gateway_index(name))
    else:
        ports = {
            "sip_port": settings.trunk_port,
            "http_port": settings.carrier_http_port,
            "ami_port": settings.carrier_ami_port,
            "rtp_start": 21000,
            "rtp_end": 21999,
        }
    return {**common, **{k: str(v) for k, v in ports.items()}}


def render(text: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise SandboxError(f"template needs {{{{{key}}}}}, which no setting provides")
        return values[key]

    return _PLACEHOLDER.sub(fill, text)


class Instance:
    def __init__(self, name: str, settings: SandboxSettings, runtime: Runtime) -> None:
        if name not in INSTANCES and gateway_index(name) < 0:
            raise SandboxError(f"unknown instance {name!r}")
        self.name = name
        # Every gateway node is rendered from the gateway's templates.
        self.role = "gateway" if gateway_index(name) >= 0 else name
        self.settings = settings
        self.runtime = runtime
        self.inner_dir = f"{settings.run_dir}/{name}"
        self.dir = runtime.outside(self.inner_dir)

    @property
    def conf(self) -> str:
        return f"{self.inner_dir}/etc/asterisk.conf"

    def write_configs(self) -> None:
        values = instance_values(self.name, self.settings, self.runtime)
        etc = self.dir / "etc"
        for sub in ("etc", "lib", "spool", "run", "log", "recordings"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((TEMPLATES / "common").glob("*.conf")):
            (etc / path.name).write_text(render(path.read_text(), values))
        for path in sorted((TEMPLATES / self.role).glob("*.conf")):
            (etc / path.name).write_text(render(path.read_text(), values))
        (etc / "extensions.conf").write_text(
            render((DIALPLANS / f"{self.role}.conf").read_text(), values)
        )
        # The carrier's dialplan appends to these logs (FILE() only appends to
        # a file that exists); they hold what the phones got since this start.
        for log in ("sms-received.log", "calls.log", "reports-sent.log"):
            (self.dir / "spool" / log).write_text("")

    def cli(self, command: str, timeout: float = 10.0) -> str:
        out = subprocess.run(
            self.runtime.command("-C", self.conf, "-rx", command),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise SandboxError(f"{self.name}: '{command}' failed: {out.stderr or out.stdout}")
        return out.stdout

    def pid(self) -> int | None:
        pidfile = self.dir / "run" / "asterisk.pid"
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            self.cli("core show uptime", timeout=5)
        except (SandboxError, subprocess.TimeoutExpired):
            return False
        return True

    def start(self, timeout: float = 30.0) -> None:
        if self.running():
            self.stop()
        self.write_configs()
        self.runtime.mount_proc()
        if self.role == "gateway":
            self.runtime.share(self.settings.sounds_dir)
            if self.settings.sms_inbox:
                self.runtime.share(os.path.dirname(self.settings.sms_inbox))
        shutil.rmtree(self.dir / "run", ignore_errors=True)
        (self.dir / "run").mkdir(parents=True)
        subprocess.run(
            self.runtime.command("-C", self.conf),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.cli("core waitfullybooted", timeout=timeout)
                return
            except (SandboxError, subprocess.TimeoutExpired):
                time.sleep(0.2)
        raise SandboxError(f"{self.name} Asterisk did not start; see {self.dir}/log/messages.log")

    def stop(self, timeout: float = 10.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            self.cli("core stop now", timeout=timeout)
        except (SandboxError, subprocess.TimeoutExpired):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no events, no goodbyes (for fault tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.05)

    def console_command(self) -> list[str]:
        return self.runtime.command("-C", self.conf, "-rvvv")


def instances(settings: SandboxSettings, runtime: Runtime | None = None,
              gateways: int = 1) -> dict[str, Instance]:
    """The gateway node(s) and the carrier simulator, gateways first."""
    runtime = runtime or Runtime.install()
    names = [*gateway_names(gateways), "carrier"]
    return {name: Instance(name, settings, runtime) for name in names}


def foreground(name: str) -> None:
    """Container entry point: write one instance's configs from the
    environment's settings, then become that Asterisk in the foreground.
    Uses only the standard library, so the Asterisk image needs no venv."""
    inst = Instance(name, SandboxSettings.from_env(), Runtime(""))
    inst.write_configs()
    os.execvp("asterisk", ["asterisk", "-f", "-C", inst.conf])


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "foreground":
        raise SystemExit("usage: python3 -m sandbox.instances foreground gateway|carrier")
    foreground(sys.argv[2])
