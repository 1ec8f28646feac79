"""Every setting of the gateway, read from environment variables prefixed AMIVONO_.

This module is the one place settings are documented: `amivono settings` prints
them with their current values. Defaults give a working local demo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Self


@dataclass(frozen=True)
class Settings:
    # --- storage and public addresses -------------------------------------
    database_url: str = field(
        default="postgresql://postgres@127.0.0.1:5432/amivono",
        metadata={"doc": "PostgreSQL DSN; the queue and all state live there."},
    )
    public_base_url: str = field(
        default="http://127.0.0.1:8080",
        metadata={"doc": "Base of the API as clients see it (used in Location, Link)."},
    )
    link_base_url: str = field(
        default="http://127.0.0.1:8080/l",
        metadata={"doc": "Base of the tracked link appended to repeated SMS."},
    )
    log_level: str = field(default="INFO", metadata={"doc": "Log level."})
    log_format: str = field(
        default="json", metadata={"doc": "`json` (one object per line) or `text`."}
    )
    metrics_port: int = field(
        default=0,
        metadata={"doc": "A dispatcher's own Prometheus port on loopback (0: none; the "
                         "API serves /metrics, and `amivono run` shares it)."},
    )
    # --- API ----------------------------------------------------------------
    api_host: str = field(default="127.0.0.1", metadata={"doc": "API bind address."})
    api_port: int = field(default=8080, metadata={"doc": "API port."})
    api_workers: int = field(
        default=1,
        metadata={"doc": "API processes for `amivono api` (one per core is a good start)."},
    )
    db_pool_size: int = field(
        default=20, metadata={"doc": "PostgreSQL connections per API process."}
    )
    rate_limit_per_hour: int = field(
        default=5000, metadata={"doc": "Default requests per hour per account."}
    )
    auth_failure_burst: int = field(
        default=20,
        metadata={"doc": "Failed authentications a client address may make at once before "
                         "429 (refilled at AMIVONO_AUTH_FAILURES_PER_MINUTE)."},
    )
    auth_failures_per_minute: float = field(
        default=30.0,
        metadata={"doc": "Failed authentications per minute a client address may go on making."},
    )
    http_header_seconds: float = field(
        default=10.0,
        metadata={"doc": "A request's line and headers must arrive within this (408 after)."},
    )
    http_body_seconds: float = field(
        default=10.0,
        metadata={"doc": "Grace before a request body must keep up the rate below (408 after)."},
    )
    http_body_bytes_per_second: float = field(
        default=4096.0,
        metadata={"doc": "Least average rate of a request body after its grace."},
    )
    http_idle_seconds: int = field(
        default=5, metadata={"doc": "An idle kept-alive connection is closed after this."}
    )
    http_max_connections: int = field(
        default=1000,
        metadata={"doc": "Open connections per API process; more are answered 503 and closed."},
    )
    max_repeat: int = field(default=100, metadata={"doc": "Largest allowed `repeat`."})
    default_repeat_interval: int = field(
        default=60, metadata={"doc": "`repeat_interval` (minutes) when `repeat` is given alone."}
    )
    max_repeat_interval: int = field(
        default=10080, metadata={"doc": "Largest `repeat_interval` in minutes (one week)."}
    )
    # --- destination guards (voice and SMS) ----------------------------------
    allowed_countries: str = field(
        default="SE",
        metadata={"doc": "Countries (ISO 3166 codes, space-separated) an account may send "
                         "to unless `amivono keys countries` sets its own; empty: every "
                         "country."},
    )
    destination_cap_per_hour: int = field(
        default=30,
        metadata={"doc": "Messages (SMS and voice) one account may create to one number "
                         "per hour; 429 above (0: no cap)."},
    )
    # --- two-way SMS --------------------------------------------------------
    sender_policy: str = field(
        default="owned",
        metadata={"doc": "`owned`: `from` must be one of the account's numbers "
                         "(`amivono numbers add`); `any`: any number (single-tenant installs)."},
    )
    extra_stop_words: str = field(
        default="",
        metadata={"doc": "More opt-out words beside STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, "
                         "QUIT, OPTOUT, REVOKE (comma-separated, e.g. `STOPP`)."},
    )
    stop_reply: str = field(
        default="You will get no more messages from this number. Reply START to undo.",
        metadata={"doc": "The confirmation sent once when a phone opts out."},
    )
    start_reply: str = field(
        default="You will get messages from this number again. Reply STOP to stop.",
        metadata={"doc": "The confirmation sent once when a phone opts back in."},
    )
    help_reply: str = field(
        default="Automated alerts. Reply STOP to stop, START to start again.",
        metadata={"doc": "The answer to HELP or INFO."},
    )
    sms_inbox: str = field(
        default="/var/lib/amivono/inbox/sms-inbox.log",
        metadata={"doc": "The gateway Asterisk's inbox file (its dialplan appends every "
                         "inbound SMS and report); dispatchers replay it, so an SMS that "
                         "came while no dispatcher listened is not lost. Same path for both "
                         "(a shared folder); empty: ARI only."},
    )
    dlr_timeout: float = field(
        default=172800.0,
        metadata={"doc": "Seconds after a send with no carrier report before its attempt "
                         "shows `expired` (48 h)."},
    )
    # --- webhooks -----------------------------------------------------------
    webhook_allowed_networks: str = field(
        default="",
        metadata={"doc": "Networks webhook URLs may point into although they are loopback, "
                         "private, link-local or otherwise internal (comma-separated CIDRs, "
                         "e.g. 127.0.0.0/8 for local tests). Empty: public addresses only."},
    )
    webhook_retry_scale: float = field(
        default=1.0,
        metadata={"doc": "Multiplies the retry schedule (first attempt at once, retries "
                         "after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); tests shorten it."},
    )
    webhook_disable_after: float = field(
        default=432000.0,
        metadata={"doc": "Seconds an endpoint may fail every delivery before it is "
                         "disabled (5 days)."},
    )
    webhook_concurrency: int = field(
        default=16, metadata={"doc": "Webhook deliveries in flight per dispatcher."}
    )
    webhook_per_endpoint: int = field(
        default=4, metadata={"doc": "Webhook deliveries one claim takes per endpoint; an "
                                    "endpoint holds fewer than twice this per dispatcher."}
    )
    # --- dispatcher --------------------------------------------------------
    minute_seconds: float = field(
        default=60.0,
        metadata={"doc": "Real seconds in one minute of repeat_interval (tests shorten it)."},
    )
    lease_seconds: float = field(
        default=60.0,
        metadata={"doc": "How long a claimed send is held before another dispatcher may take it."},
    )
    poll_seconds: float = field(
        default=2.0, metadata={"doc": "Polling fallback when no NOTIFY arrives."}
    )
    sms_concurrency: int = field(
        default=32, metadata={"doc": "SMS sends in flight per dispatcher."}
    )
    sms_per_second: float = field(
        default=200.0,
        metadata={"doc": "Pace of SMS hand-offs to Asterisk per dispatcher (protects PJSIP)."},
    )
    sms_max_failures: int = field(
        default=5, metadata={"doc": "Consecutive failed attempts before a message is failed."}
    )
    sms_retry_seconds: float = field(
        default=5.0,
        metadata={"doc": "First retry delay after a failed attempt; doubles, at most 300 s."},
    )
    sms_transport: str = field(
        default="ari-pjsip",
        metadata={"doc": "Default SMS transport: `ari-pjsip` (SIP MESSAGE to the trunk via "
                         "ARI) or `dongle-ami` (GSM modem via chan_dongle over AMI). "
                         "An account may choose its own (`amivono keys transport`)."},
    )
    dongle_device: str = field(
        default="",
        metadata={"doc": "chan_dongle device for `dongle-ami` (empty: transport off). "
                         "It is driven over the gateway's AMI (AMIVONO_AMI_*)."},
    )
    dispatcher_name: str = field(
        default="", metadata={"doc": "Name of this dispatcher (default: host-pid)."}
    )
    # --- voice --------------------------------------------------------------
    sounds_dir: str = field(
        default="/var/lib/amivono/sounds",
        metadata={"doc": "Where converted sound files are kept (one folder per account)."},
    )
    asterisk_sounds_dir: str = field(
        default="",
        metadata={"doc": "The same folder as the gateway Asterisk sees it (default: sounds_dir)."},
    )
    max_upload_bytes: int = field(
        default=20 * 1024 * 1024, metadata={"doc": "Largest sound file upload (413 above)."}
    )
    max_sound_seconds: float = field(
        default=600.0, metadata={"doc": "Longest sound file accepted, in seconds."}
    )
    max_sound_rate: int = field(
        default=96000,
        metadata={"doc": "Highest sample rate of an upload, Hz (422 above, read from its "
                         "header before decoding)."},
    )
    max_sound_channels: int = field(
        default=8, metadata={"doc": "Most channels an upload may have (422 above)."}
    )
    max_concurrent_uploads: int = field(
        default=2,
        metadata={"doc": "Uploads read and decoded at once per API process; one more is "
                         "503 with Retry-After."},
    )
    dial_timeout: int = field(
        default=30, metadata={"doc": "Seconds a voice call may ring before it is no-answer."}
    )
    calls_per_dispatcher: int = field(
        default=50, metadata={"doc": "Voice calls in flight per dispatcher."}
    )
    calls_per_trunk: int = field(
        default=100, metadata={"doc": "Voice calls in flight on the trunk, all dispatchers."}
    )
    calls_per_second: float = field(
        default=10.0, metadata={"doc": "Pace of call attempts per dispatcher."}
    )
    ari_reconnect_max_seconds: float = field(
        default=10.0,
        metadata={"doc": "Longest wait between attempts to reconnect a gateway node's ARI "
                         "event WebSocket (the wait doubles from 0.2 s up to this)."},
    )
    gateway_lost_seconds: float = field(
        default=60.0,
        metadata={"doc": "Seconds the calls in flight on a gateway node whose ARI went away "
                         "wait for it to come back (then reconciled with its channels) before "
                         "they end `failed` and are retried per their message."},
    )
    max_voice_retries: int = field(
        default=5, metadata={"doc": "Largest `retries` a voice message may ask for."}
    )
    ack_seconds: float = field(
        default=10.0,
        metadata={"doc": "Seconds an acknowledged call (`acknowledge: true`) listens for a "
                         "key after its prompt before it ends unacknowledged."},
    )
    speech_engine: str = field(
        default="espeak-ng",
        metadata={"doc": "The text-to-speech program for `text` (espeak-ng; "
                         "scripts/setup.sh installs it). Missing: `text` is refused with 422."},
    )
    fastagi_port: int = field(default=4573, metadata={"doc": "FastAGI server port."})
    fastagi_bind: str = field(
        default="127.0.0.1",
        metadata={"doc": "FastAGI bind address: loopback or a private network only, "
                         "FastAGI has no authentication."},
    )
    # --- gateway Asterisk ----------------------------------------------------
    ari_url: str = field(
        default="http://127.0.0.1:18088/ari", metadata={"doc": "Gateway Asterisk ARI base URL."}
    )
    ari_user: str = field(default="amivono", metadata={"doc": "ARI user."})
    ari_password: str = field(default="amivono-ari-secret", metadata={"doc": "ARI password."})
    ari_app: str = field(
        default="amivono", metadata={"doc": "Stasis app name prefix (dispatcher name appended)."}
    )
    ami_host: str = field(default="127.0.0.1", metadata={"doc": "Gateway AMI host."})
    ami_port: int = field(default=15038, metadata={"doc": "Gateway AMI port (loopback)."})
    ami_user: str = field(default="amivono", metadata={"doc": "AMI user."})
    ami_password: str = field(default="amivono-ami-secret", metadata={"doc": "AMI password."})
    trunk_endpoint: str = field(
        default="carrier", metadata={"doc": "PJSIP endpoint name of the trunk."}
    )
    trunk_host: str = field(default="127.0.0.1", metadata={"doc": "Trunk (carrier) SIP host."})
    trunk_port: int = field(default=15070, metadata={"doc": "Trunk (carrier) SIP port."})

    @classmethod
    def from_env(cls) -> Self:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"AMIVONO_{f.name.upper()}")
            if raw is None:
                continue
            kind: type = type(f.default)  # every setting has a default of its type
            if kind is str:
                values[f.name] = raw
                continue
            try:
                values[f.name] = kind(raw)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise ValueError(
                    f"AMIVONO_{f.name.upper()} must be {what}, not {raw!r}") from None
        return cls(**values)

    def public_url(self, path: str) -> str:
        """An absolute URL of the API as clients see it (Location, Link, url)."""
        return f"{self.public_base_url.rstrip('/')}{path}"

    @property
    def sounds_dir_for_asterisk(self) -> str:
        return self.asterisk_sounds_dir or self.sounds_dir

    def describe(self, only_own: bool = False) -> list[tuple[str, str, str]]:
        """(variable, current value, documentation) for every setting; with
        `only_own`, only those a subclass adds."""
        out = []
        inherited = {f.name for f in fields(Settings)} if only_own else set()
        for f in fields(self):
            if f.name in inherited:
                continue
            value = getattr(self, f.name)
            if "password" in f.name:
                value = "***"
            elif isinstance(value, str) and "://" in value and "@" in value:
                # A DSN or URL may carry a password: show user and host only.
                scheme, _, rest = value.partition("://")
                userinfo, _, host = rest.rpartition("@")
                if ":" in userinfo:
                    value = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
            out.append((f"AMIVONO_{f.name.upper()}", str(value), f.metadata.get("doc", "")))
        return out
