"""The `amivono` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from service.settings import Settings
from service.store import database

if TYPE_CHECKING:
    from service.operator.commands import Operator

T = TypeVar("T")


def _settings() -> Settings:
    return Settings.from_env()


def _logging() -> None:
    from service.log_format import configure

    settings = _settings()
    configure(settings.log_level, settings.log_format)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _dispatcher(settings: Settings, stop: asyncio.Event) -> None:
    from service.delivery.dispatcher import Dispatcher, default_name
    from service.delivery.dongle_transport import DongleAmiTransport
    from service.delivery.gateway_pool import GatewayPool
    from service.delivery.sms_transports import AriPjsipTransport, SmsTransport

    name = settings.dispatcher_name or default_name()
    # Each dispatcher its own Stasis app: a second connection with the same
    # app name would replace the first.
    gateways = GatewayPool(settings, f"{settings.ari_app}-{name}")
    transports: dict[str, SmsTransport] = {
        AriPjsipTransport.name: AriPjsipTransport(
            gateways, settings.trunk_host, settings.trunk_port)}
    if settings.dongle_device:
        transports[DongleAmiTransport.name] = DongleAmiTransport(
            settings.ami_host, settings.ami_port, settings.ami_user, settings.ami_password,
            settings.dongle_device)
    if settings.sms_transport not in transports:
        raise SystemExit(f"AMIVONO_SMS_TRANSPORT={settings.sms_transport!r} is not available "
                         f"(configured: {', '.join(transports)})")
    try:
        await Dispatcher(settings, transports, gateways, name).run(stop)
    finally:
        for transport in transports.values():
            await transport.close()
        await gateways.close()


def _server(settings: Settings) -> uvicorn.Server:
    from service.http.app import create_app
    from service.http.connection_limits import ConnectionLimits, LimitedHttpProtocol

    LimitedHttpProtocol.limits = ConnectionLimits.from_settings(settings)
    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port,
        log_level="warning", access_log=False, lifespan="on", http=LimitedHttpProtocol,
        timeout_keep_alive=settings.http_idle_seconds)
    return uvicorn.Server(config)


async def _fastagi(settings: Settings, stop: asyncio.Event) -> None:
    from service.telephony.fastagi import serve

    pool = await database.create_pool(settings.database_url, min_size=1, max_size=4)
    try:
        await serve(settings, pool, stop)
    finally:
        await pool.close()


async def _run_all(settings: Settings, api: bool, dispatcher: bool,
                   fastagi: bool = False) -> None:
    await database.ensure_database(settings.database_url)
    await database.migrate(settings.database_url)
    stop = _stop_event()
    tasks = []
    server = _server(settings) if api else None
    if server is not None:
        # uvicorn would install its own signal handlers; ours stop everything.
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        tasks.append(asyncio.create_task(server.serve()))
        logging.getLogger("amivono").info(
            "API listening on http://%s:%s", settings.api_host, settings.api_port
        )
    if dispatcher:
        tasks.append(asyncio.create_task(_dispatcher(settings, stop)))
    if fastagi:
        tasks.append(asyncio.create_task(_fastagi(settings, stop)))
    await stop.wait()
    if server is not None:
        server.should_exit = True
    await asyncio.gather(*tasks)


def cmd_run(args: argparse.Namespace) -> None:
    settings = _settings()
    if args.api and not args.dispatcher and not args.fastagi and settings.api_workers > 1:
        # Several API processes on one port: uvicorn's supervisor forks them;
        # each reads the connection limits from the environment.
        from service.http.connection_limits import LimitedHttpProtocol

        asyncio.run(database.ensure_database(settings.database_url))
        asyncio.run(database.migrate(settings.database_url))
        uvicorn.run("service.http.app:create_app_from_env", factory=True, host=settings.api_host,
                    port=settings.api_port, workers=settings.api_workers,
                    log_level="warning", access_log=False, http=LimitedHttpProtocol,
                    timeout_keep_alive=settings.http_idle_seconds)
        return
    asyncio.run(_run_all(_settings(), api=args.api, dispatcher=args.dispatcher,
                         fastagi=args.fastagi))


def cmd_migrate(args: argparse.Namespace) -> None:
    settings = _settings()

    async def go() -> None:
        await database.ensure_database(settings.database_url)
        for name in await database.migrate(settings.database_url):
            print(f"applied {name}")

    asyncio.run(go())


def cmd_keys_create(args: argparse.Namespace) -> None:
    from service.store.api_keys import create_key

    settings = _settings()

    async def go() -> str:
        await database.ensure_database(settings.database_url)
        await database.migrate(settings.database_url)
        pool = await database.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            return await create_key(pool, args.account)
        finally:
            await pool.close()

    print(asyncio.run(go()))


def cmd_keys_rate_limit(args: argparse.Namespace) -> None:
    from service.store.queries import queries

    row = _operate(lambda op: queries.accounts.set_rate_limit(
        op.pool, name=args.account, rate_limit_per_hour=args.per_hour))
    if row is None:
        raise SystemExit(f"no account {args.account!r}")
    print(f"{row['name']}: {row['rate_limit_per_hour']} requests per hour")


def cmd_keys_transport(args: argparse.Namespace) -> None:
    from service.store.queries import queries

    choice = None if args.transport == "default" else args.transport
    row = _operate(lambda op: queries.accounts.set_sms_transport(
        op.pool, name=args.account, sms_transport=choice))
    if row is None:
        raise SystemExit(f"no account {args.account!r}")
    print(f"{row['name']}: SMS via {row['sms_transport'] or 'the default transport'}")


def cmd_keys_countries(args: argparse.Namespace) -> None:
    from service.domain.destinations import parse_countries
    from service.store.queries import queries

    if args.default and (args.any or args.countries):
        raise SystemExit("--default takes no countries and no --any")
    if args.any and args.countries:
        raise SystemExit("--any takes no countries")
    if not (args.default or args.any or args.countries):
        raise SystemExit("give countries (SE NO ...), --any or --default")
    try:
        chosen = None if args.default else [] if args.any else parse_countries(args.countries)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    row = _operate(lambda op: queries.accounts.set_allowed_countries(
        op.pool, name=args.account, allowed_countries=chosen))
    if row is None:
        raise SystemExit(f"no account {args.account!r}")
    countries = row["allowed_countries"]
    if countries is None:
        shown = f"the default (AMIVONO_ALLOWED_COUNTRIES: {_settings().allowed_countries!r})"
    else:
        shown = " ".join(countries) or "every country"
    print(f"{row['name']}: sends to {shown}")


def _operate(work: Callable[[Operator], Awaitable[T]]) -> T:
    """Run one async piece of work with an Operator (a pool, the settings)."""
    from service.operator.commands import Operator

    async def go() -> T:
        async with Operator(_settings()) as op:
            return await work(op)

    return asyncio.run(go())


def cmd_keys_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.keys()), args.json,
         ["id", "account", "prefix", "created_at", "revoked_at", "rate_limit_per_hour",
          "sms_transport", "allowed_countries"])


def cmd_keys_revoke(args: argparse.Namespace) -> None:
    if not _operate(lambda op: op.revoke(args.id)):
        raise SystemExit(f"no live key {args.id}")
    print(f"key {args.id} revoked")


def cmd_messages_list(args: argparse.Namespace) -> None:
    from service.operator.commands import columns_for, emit

    rows = _operate(lambda op: op.messages(args.kind, args.account, args.limit))
    emit(rows, args.json, list(columns_for(args.kind)))


def cmd_messages_show(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    found = _operate(lambda op: op.message(args.kind, args.id))
    if found is None:
        raise SystemExit(f"no {args.kind} message {args.id}")
    emit(found, args.json)


def cmd_messages_cancel(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    found = _operate(lambda op: op.cancel(args.kind, args.id))
    if found is None:
        raise SystemExit(f"no {args.kind} message {args.id}")
    emit(found, args.json)
    if found["status"] != "canceled":
        raise SystemExit(f"{args.kind} message {args.id} is {found['status']}: "
                         "nothing left to cancel")


def cmd_numbers_add(args: argparse.Namespace) -> None:
    _operate(lambda op: op.add_number(args.account, args.number))
    print(f"{args.number}: {args.account}'s")


def cmd_numbers_remove(args: argparse.Namespace) -> None:
    if not _operate(lambda op: op.remove_number(args.account, args.number)):
        raise SystemExit(f"{args.account} has no number {args.number}")
    print(f"{args.number}: removed from {args.account}")


def cmd_numbers_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.numbers(args.account)), args.json,
         ["number", "account", "created_at"])


def cmd_optouts_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.opt_outs(args.account)), args.json,
         ["phone", "account", "inbound_id", "created_at"])


def cmd_messages_inbound(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.inbound(args.account, args.unrouted, args.limit)), args.json,
         ["id", "account", "from", "to", "kind", "received_at", "message"])


def cmd_webhooks_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.webhooks(args.account)), args.json,
         ["id", "account", "url", "events", "enabled", "disabled_reason", "failing_since"])


def cmd_webhooks_deliveries(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.webhook_deliveries(args.account, args.endpoint, args.limit)),
         args.json, ["id", "endpoint_id", "account", "event_type", "webhook_id", "status",
                     "attempts", "last_status_code", "last_error", "next_attempt_at"])


def cmd_files_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.files(args.account)), args.json,
         ["account", "name", "duration", "size", "source_format", "formats", "updated_at"])


def cmd_files_upload(args: argparse.Namespace) -> None:
    from pathlib import Path

    from service.operator.commands import upload_file

    settings = _settings()
    key = args.key or os.environ.get("AMIVONO_KEY")
    if not key:
        raise SystemExit("give --key or set AMIVONO_KEY: the file goes to that key's account")
    response = asyncio.run(upload_file(args.api or settings.public_base_url, key, args.name,
                                       Path(args.path), progress=not args.json))
    if response.status_code >= 400:
        raise SystemExit(f"upload refused ({response.status_code}): {response.text}")
    if args.json:
        print(response.text)
    else:
        info = response.json()
        print(f"{info['name']}: {info['duration']} s, converted to {', '.join(info['formats'])}")


def cmd_gateways_add(args: argparse.Namespace) -> None:
    from service.operator.commands import GatewayRefused, Operator

    settings = _settings()

    async def go() -> None:
        await database.ensure_database(settings.database_url)
        await database.migrate(settings.database_url)
        async with Operator(settings) as op:
            await op.add_gateway(args.name, args.ari_url, args.ari_user, args.ari_password,
                                 args.trunk, args.calls, args.sms_per_second)

    try:
        asyncio.run(go())
    except GatewayRefused as exc:
        raise SystemExit("gateway not added: " + "; ".join(exc.problems)) from None
    print(f"gateway {args.name}: added ({args.ari_url}); every dispatcher uses it within "
          "a second")


def cmd_gateways_list(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    emit(_operate(lambda op: op.gateways()), args.json,
         ["name", "ari_url", "state", "calls_in_flight", "calls", "sends_per_second",
          "sms_per_second", "trunk", "last_error", "last_error_at"])


def cmd_gateways_enable(args: argparse.Namespace) -> None:
    enabled = args.gateways_command == "enable"
    if not _operate(lambda op: op.set_gateway_enabled(args.name, enabled)):
        raise SystemExit(f"no gateway {args.name!r} (see `amivono gateways list`)")
    print(f"gateway {args.name}: " + ("enabled" if enabled else
                                      "disabled: it gets no new work; calls on it finish"))


def cmd_gateways_remove(args: argparse.Namespace) -> None:
    if not _operate(lambda op: op.remove_gateway(args.name)):
        raise SystemExit(f"no gateway {args.name!r} (see `amivono gateways list`)")
    print(f"gateway {args.name}: removed: it gets no new work; calls on it finish")


def cmd_status(args: argparse.Namespace) -> None:
    from service.operator.commands import emit

    report = _operate(lambda op: op.status())
    emit(report, args.json)
    if report.get("postgres") != "ok" or not str(report.get("asterisk", "")).startswith("ok"):
        raise SystemExit(1)


def cmd_settings(args: argparse.Namespace) -> None:
    for name, value, doc in _settings().describe():
        print(f"{name}={value}\n    {doc}")


def _listing(parent: Any, name: str, helptext: str,
             func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    """A listing command: every account's rows, or one account's; --json for scripts."""
    p: argparse.ArgumentParser = parent.add_parser(name, help=helptext)
    p.add_argument("--account")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> None:
    _logging()
    # uvloop (with uvicorn[standard]) makes every server here cheaper per request;
    # uvicorn's own workers already use it.
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.install()
    parser = argparse.ArgumentParser(prog="amivono", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="API, dispatcher and FastAGI together, in the foreground")
    p.set_defaults(func=cmd_run, api=True, dispatcher=True, fastagi=True)
    p = sub.add_parser("api", help="the HTTP API alone")
    p.set_defaults(func=cmd_run, api=True, dispatcher=False, fastagi=False)
    p = sub.add_parser("dispatcher", help="a dispatcher alone")
    p.set_defaults(func=cmd_run, api=False, dispatcher=True, fastagi=False)
    p = sub.add_parser("fastagi", help="the FastAGI server alone (one per gateway Asterisk)")
    p.set_defaults(func=cmd_run, api=False, dispatcher=False, fastagi=True)
    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys and accounts").add_subparsers(
        dest="keys_command", required=True
    )
    p = keys.add_parser("create", help="create ACCOUNT if needed and print a new key")
    p.add_argument("account")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("rate-limit", help="set ACCOUNT's requests per hour")
    p.add_argument("account")
    p.add_argument("per_hour", type=int)
    p.set_defaults(func=cmd_keys_rate_limit)
    p = keys.add_parser("list", help="every key, its account and limits")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="revoke key ID (from `keys list`)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_keys_revoke)
    p = keys.add_parser("transport", help="set ACCOUNT's SMS transport")
    p.add_argument("account")
    p.add_argument("transport", choices=["ari-pjsip", "dongle-ami", "default"])
    p.set_defaults(func=cmd_keys_transport)
    p = keys.add_parser("countries", help="set the countries ACCOUNT may send to")
    p.add_argument("account")
    p.add_argument("countries", nargs="*", help="ISO 3166 codes, such as SE NO")
    p.add_argument("--any", action="store_true", help="every country")
    p.add_argument("--default", action="store_true",
                   help="clear: follow AMIVONO_ALLOWED_COUNTRIES again")
    p.set_defaults(func=cmd_keys_countries)

    messages = sub.add_parser("messages", help="SMS and voice messages").add_subparsers(
        dest="messages_command", required=True)
    for name, func, helptext in (("list", cmd_messages_list, "newest first"),
                                 ("show", cmd_messages_show, "one, with its attempts"),
                                 ("cancel", cmd_messages_cancel, "cancel what is to come")):
        p = messages.add_parser(name, help=helptext)
        p.add_argument("--voice", dest="kind", action="store_const", const="voice",
                       default="sms", help="voice messages (default: SMS)")
        p.add_argument("--json", action="store_true")
        if name == "list":
            p.add_argument("--account")
            p.add_argument("--limit", type=int, default=20)
        else:
            p.add_argument("id", type=int)
        p.set_defaults(func=func)

    p = messages.add_parser("inbound", help="SMS sent to the accounts' numbers, newest first")
    p.add_argument("--account")
    p.add_argument("--unrouted", action="store_true",
                   help="only those sent to a number no account owns")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_messages_inbound)

    numbers = sub.add_parser("numbers", help="numbers owned by accounts").add_subparsers(
        dest="numbers_command", required=True)
    for name, func, helptext in (("add", cmd_numbers_add, "give NUMBER to ACCOUNT"),
                                 ("remove", cmd_numbers_remove, "take NUMBER from ACCOUNT")):
        p = numbers.add_parser(name, help=helptext)
        p.add_argument("account")
        p.add_argument("number")
        p.set_defaults(func=func)
    _listing(numbers, "list", "every account's numbers, or one account's", cmd_numbers_list)

    optouts = sub.add_parser("optouts", help="phones that sent STOP").add_subparsers(
        dest="optouts_command", required=True)
    _listing(optouts, "list", "every account's opt-outs, or one account's", cmd_optouts_list)

    hooks = sub.add_parser("webhooks", help="webhook endpoints and deliveries").add_subparsers(
        dest="webhooks_command", required=True)
    _listing(hooks, "list", "every account's endpoints, or one account's", cmd_webhooks_list)
    p = hooks.add_parser("deliveries", help="recent deliveries, newest first")
    p.add_argument("--account")
    p.add_argument("--endpoint", type=int)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_webhooks_deliveries)

    files = sub.add_parser("files", help="sound files").add_subparsers(
        dest="files_command", required=True)
    _listing(files, "list", "every account's files, or one account's", cmd_files_list)
    p = files.add_parser("upload", help="upload PATH as NAME through the API")
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("--key", help="API key of the account (or AMIVONO_KEY)")
    p.add_argument("--api", help="API base URL (default AMIVONO_PUBLIC_BASE_URL)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_files_upload)

    gws = sub.add_parser("gateways", help="gateway Asterisk nodes").add_subparsers(
        dest="gateways_command", required=True)
    p = gws.add_parser("add", help="add a gateway node every dispatcher will use")
    p.add_argument("name")
    p.add_argument("--ari-url", required=True, help="e.g. http://10.0.0.5:8088/ari")
    p.add_argument("--ari-user", required=True)
    p.add_argument("--ari-password", required=True)
    p.add_argument("--trunk", help="its PJSIP trunk endpoint (default AMIVONO_TRUNK_ENDPOINT)")
    p.add_argument("--calls", type=int,
                   help="calls in flight on it, all dispatchers (default AMIVONO_CALLS_PER_TRUNK)")
    p.add_argument("--sms-per-second", type=float,
                   help="SMS hand-offs per second to it, all dispatchers "
                        "(default AMIVONO_SMS_PER_SECOND)")
    p.set_defaults(func=cmd_gateways_add)
    p = gws.add_parser("list", help="every node with its live state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gateways_list)
    for name, helptext in (("enable", "let NAME take new work again"),
                           ("disable", "give NAME no new work (calls on it finish)")):
        p = gws.add_parser(name, help=helptext)
        p.add_argument("name")
        p.set_defaults(func=cmd_gateways_enable)
    p = gws.add_parser("remove", help="forget NAME (calls on it finish)")
    p.add_argument("name")
    p.set_defaults(func=cmd_gateways_remove)

    p = sub.add_parser("status", help="queue depth, calls in flight, Postgres and Asterisk")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    # Commands of installed extensions, such as the development sandbox's
    # `asterisk` and `carrier`: the service itself never imports them.
    for extension in entry_points(group="amivono.commands"):
        extension.load()(sub)

    p = sub.add_parser("settings", help="every AMIVONO_* setting, its value and meaning")
    p.set_defaults(func=cmd_settings)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)
