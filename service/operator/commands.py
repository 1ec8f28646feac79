"""The operator's commands: keys, messages, files and status, straight on the
database (an operator sees every account), except file uploads, which go
through the API so the file is converted where the sounds live."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from service.domain.gateway_configs import gateway_problems
from service.domain.phone_numbers import InvalidNumber, parse_e164
from service.settings import Settings
from service.store import account_numbers, database, inbound_messages, webhooks
from service.store.message_kinds import KINDS
from service.store.queries import queries
from service.telephony.ari import AriClient, AriError


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table, for people; scripts use --json."""
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        text = str(value).replace("\n", " ")
        return text if len(text) <= 48 else text[:45] + "..."

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str, indent=None))
    elif columns is not None:
        print(table(data, columns))
    else:
        for key, value in data.items():
            if key != "attempts":
                print(f"{key:>16}: {'-' if value is None else value}")
        if data.get("attempts"):
            print()
            cols = [c for c in ("id", "send_number", "dispatcher", "transport", "gateway",
                                "started_at",
                                "finished_at", "outcome", "cause", "detail")
                    if c in data["attempts"][0]]
            print(table(data["attempts"], cols))


class GatewayRefused(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Operator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> Operator:
        self._pool = await database.create_pool(self.settings.database_url, min_size=1,
                                                max_size=2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None
        return self._pool

    # --- keys -----------------------------------------------------------------

    async def keys(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await queries.api_keys.list_keys(self.pool)]

    async def revoke(self, key_id: int) -> bool:
        return await queries.api_keys.revoke_key(self.pool, id=key_id) is not None

    # --- messages -------------------------------------------------------------

    async def messages(self, kind: str, account: str | None, limit: int) -> list[dict[str, Any]]:
        chosen = KINDS[kind]
        rows = await chosen.table.admin_list(self.pool, account=account, limit=limit)
        return [{"account": r["account"], **chosen.render(r, self.settings)} for r in rows]

    async def message(self, kind: str, message_id: int) -> dict[str, Any] | None:
        chosen = KINDS[kind]
        row = await chosen.table.admin_get(self.pool, id=message_id)
        if row is None:
            return None
        attempts = await chosen.attempts.list_for_message(self.pool, message_id=message_id)
        return {"account": row["account"],
                **chosen.render(row, self.settings, list(attempts))}

    async def cancel(self, kind: str, message_id: int) -> dict[str, Any] | None:
        found = await self.message(kind, message_id)
        if found is None:
            return None
        account_id = await queries.accounts.id_by_name(self.pool, name=found["account"])
        async with self.pool.acquire() as conn:
            await KINDS[kind].cancel(conn, account_id, message_id)
        return await self.message(kind, message_id)

    # --- numbers, opt-outs, inbound SMS ----------------------------------------

    async def account_id(self, name: str) -> int:
        found: int | None = await queries.accounts.id_by_name(self.pool, name=name)
        if found is None:
            raise SystemExit(f"no account {name!r} (amivono keys create {name})")
        return found

    async def add_number(self, account: str, number: str) -> None:
        try:
            await account_numbers.add(self.pool, await self.account_id(account),
                                      parse_e164(number))
        except (InvalidNumber, account_numbers.TakenNumber) as exc:
            raise SystemExit(f"{number}: {exc}") from None

    async def remove_number(self, account: str, number: str) -> bool:
        return await account_numbers.remove(self.pool, await self.account_id(account), number)

    async def numbers(self, account: str | None) -> list[dict[str, Any]]:
        rows = await queries.phone_numbers.admin_list(self.pool, account=account)
        return [dict(r) for r in rows]

    async def opt_outs(self, account: str | None) -> list[dict[str, Any]]:
        return [dict(r) for r in await queries.opt_outs.admin_list(self.pool, account=account)]

    async def inbound(self, account: str | None, unrouted: bool,
                      limit: int) -> list[dict[str, Any]]:
        rows = await queries.inbound_messages.admin_list(
            self.pool, account=account, unrouted=unrouted, limit=limit)
        return [{"account": r["account"], **inbound_messages.render(r, self.settings)}
                for r in rows]

    # --- webhooks ---------------------------------------------------------------

    async def webhooks(self, account: str | None) -> list[dict[str, Any]]:
        rows = await queries.webhook_endpoints.admin_list(self.pool, account=account)
        return [{"account": r["account"], **webhooks.render(r)} for r in rows]

    async def webhook_deliveries(self, account: str | None, endpoint: int | None,
                                 limit: int) -> list[dict[str, Any]]:
        rows = await queries.webhook_deliveries.admin_list(
            self.pool, account=account, endpoint_id=endpoint, limit=limit)
        return [dict(r) for r in rows]

    # --- files ----------------------------------------------------------------

    async def files(self, account: str | None) -> list[dict[str, Any]]:
        rows = await queries.sound_files.admin_list(self.pool, account=account)
        return [{"account": r["account"], "name": r["name"], "duration": r["duration_ms"] / 1000,
                 "size": r["size_bytes"], "source_format": r["source_format"],
                 "formats": ",".join(r["formats"]), "updated_at": r["updated_at"]}
                for r in rows]

    # --- gateway nodes -------------------------------------------------------

    async def add_gateway(self, name: str, ari_url: str, ari_user: str, ari_password: str,
                          trunk: str | None, calls: int | None,
                          sms_per_second: float | None) -> None:
        """Raises GatewayRefused with every reason the node cannot be added."""
        problems = gateway_problems(name, ari_url, ari_user, ari_password, trunk, calls,
                                    sms_per_second)
        if problems:
            raise GatewayRefused(problems)
        row = await queries.gateways.add(
            self.pool, name=name, ari_url=ari_url, ari_user=ari_user,
            ari_password=ari_password, trunk=trunk, calls=calls,
            sms_per_second=sms_per_second)
        if row is None:
            raise GatewayRefused([f"a gateway named {name!r} exists already "
                                  "(`amivono gateways remove` it first to change it)"])

    async def set_gateway_enabled(self, name: str, enabled: bool) -> bool:
        return await queries.gateways.set_enabled(
            self.pool, name=name, enabled=enabled) is not None

    async def remove_gateway(self, name: str) -> bool:
        return await queries.gateways.remove(self.pool, name=name) is not None

    async def gateways(self) -> list[dict[str, Any]]:
        """Each node with its live state as the dispatchers' heartbeats tell it."""
        rows = await queries.gateways.live_state(
            self.pool, default_url=self.settings.ari_url, fresh_seconds=5.0)
        out = []
        for r in rows:
            state = ("disabled" if not r["enabled"]
                     else "no dispatcher" if not r["dispatchers"]
                     else "connected" if r["connected"] == r["dispatchers"]
                     else "disconnected" if not r["connected"]
                     else f"connected to {r['connected']} of {r['dispatchers']}")
            out.append({
                "name": r["name"], "ari_url": r["ari_url"], "enabled": r["enabled"],
                "configured": r["configured"],
                "trunk": r["trunk"] or self.settings.trunk_endpoint,
                "calls": self.settings.calls_per_trunk if r["calls"] is None else r["calls"],
                "sms_per_second": (r["sms_per_second"] if r["sms_per_second"] is not None
                                   else self.settings.sms_per_second),
                "state": state, "dispatchers": r["dispatchers"],
                "connected": r["connected"], "calls_in_flight": r["calls_in_flight"],
                "sends_per_second": round(r["sends_per_second"], 1),
                "last_error": r["last_error"], "last_error_at": r["last_error_at"],
            })
        return out

    # --- status ---------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            depth = await queries.metrics.queue_depth(self.pool)
            out["postgres"] = "ok"
            for row in depth:
                out[f"{row['kind']}_{row['state']}"] = row["count"]
        except database.OUTAGE as exc:
            out["postgres"] = f"{type(exc).__name__}: {exc}"
        s = self.settings
        ari = AriClient(s.ari_url, s.ari_user, s.ari_password, app=s.ari_app, timeout=3.0)
        try:
            out["asterisk"] = "ok: " + (await ari.info())["system"]["version"]
        except (AriError, KeyError, TypeError) as exc:
            out["asterisk"] = f"{type(exc).__name__}: {exc}"
        finally:
            await ari.close()
        return out


async def upload_file(api: str, key: str, name: str, path: Path,
                      progress: bool = True) -> httpx.Response:
    """PUT the file to the API, streaming it with a progress bar on stderr."""
    size = path.stat().st_size  # noqa: ASYNC240 (a CLI with nothing else to do)

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        started = time.monotonic()
        with path.open("rb") as f:  # noqa: ASYNC240
            while chunk := f.read(64 * 1024):
                sent += len(chunk)
                if progress:
                    _bar(sent, size, time.monotonic() - started)
                yield chunk
        if progress:
            print(file=sys.stderr)

    async with httpx.AsyncClient(timeout=120) as client:
        return await client.put(
            f"{api.rstrip('/')}/files/{name}", content=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Length": str(size)})


def _bar(done: int, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / elapsed / 1024 if elapsed > 0 else 0.0
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done * 100 // max(total, 1):3d}% "
          f"{done // 1024} KiB {rate:.0f} KiB/s", end="", file=sys.stderr, flush=True)


def columns_for(kind: str) -> Iterable[str]:
    if kind == "sms":
        return ("id", "account", "to", "status", "sent_count", "repeat", "next_send_at",
                "created_at")
    return ("id", "account", "to", "file", "status", "outcome", "cause", "created_at")
