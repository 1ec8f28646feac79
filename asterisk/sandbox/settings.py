"""Settings of the development sandbox only: how the two sandbox Asterisk
instances (gateway and carrier simulator) are laid out and wired together.

They extend the service's settings (the gateway's ARI, AMI and trunk as the
service sees them) and read the same AMIVONO_* environment; production code
never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SandboxSettings(Settings):
    # --- the gateway Asterisk as the sandbox renders it --------------------
    fastagi_host: str = field(
        default="127.0.0.1", metadata={"doc": "Where the gateway's dialplan reaches FastAGI."}
    )
    ami_permit: str = field(
        default="127.0.0.1/255.255.255.255",
        metadata={"doc": "Network allowed to log in to AMI (address/mask)."},
    )
    asterisk_bind: str = field(
        default="127.0.0.1", metadata={"doc": "Address Asterisk binds SIP, ARI and AMI to."}
    )
    sip_port: int = field(default=15060, metadata={"doc": "Gateway SIP (UDP) port."})
    http_port: int = field(default=18088, metadata={"doc": "Gateway HTTP/ARI port."})
    gateway_host: str = field(
        default="127.0.0.1",
        metadata={"doc": "The gateway's SIP address as the carrier simulator sees it."},
    )
    trunk_user: str = field(default="amivono", metadata={"doc": "Trunk auth user."})
    trunk_password: str = field(
        default="amivono-trunk-secret", metadata={"doc": "Trunk auth password."}
    )
    carrier_http_port: int = field(
        default=18089, metadata={"doc": "Carrier simulator HTTP port (loopback)."}
    )
    carrier_ami_port: int = field(
        default=15039, metadata={"doc": "Carrier simulator AMI port (loopback)."}
    )
    asterisk_root: str = field(
        default="/var/cache/amivono/asterisk-root",
        metadata={"doc": "Debian sid root holding asterisk when the system has none."},
    )
    run_dir: str = field(
        default="/srv/amivono",
        metadata={"doc": "Folder (inside the Asterisk root) for the instances' configs and state."},
    )
