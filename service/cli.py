"""The `amivono` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import uvicorn

from . import database
from .settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _logging() -> None:
    from .log_format import configure

    settings = _settings()
    configure(settings.log_level, settings.log_format)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _dispatcher(settings: Settings, stop: asyncio.Event) -> None:
    from .ari import AriClient
    from .dispatcher import Dispatcher, default_name
    from .dongle_transport import DongleAmiTransport
    from .sms_transports import AriPjsipTransport, SmsTransport

    name = settings.dispatcher_name or default_name()
    # Each dispatcher its own Stasis app: a second connection with the same
    # app name would replace the first.
    ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password,
                    f"{settings.ari_app}-{name}")
    transports: dict[str, SmsTransport] = {
        AriPjsipTransport.name: AriPjsipTransport(
            ari, settings.trunk_endpoint, settings.trunk_host, settings.trunk_port)}
    if settings.dongle_device:
        transports[DongleAmiTransport.name] = DongleAmiTransport(
            settings.ami_host, settings.ami_port, settings.ami_user, settings.ami_password,
            settings.dongle_device)
    if settings.sms_transport not in transports:
        raise SystemExit(f"AMIVONO_SMS_TRANSPORT={settings.sms_transport!r} is not available "
                         f"(configured: {', '.join(transports)})")
    try:
        await Dispatcher(settings, transports, ari, name).run(stop)
    finally:
        for transport in transports.values():
            await transport.close()
        await ari.close()


def _server(settings: Settings) -> uvicorn.Server:
    from .app import create_app

    config = uvicorn.Config(
        create_app(settings), host=settings.api_host, port=settings.api_port,
        log_level="warning", access_log=False, lifespan="on")
    return uvicorn.Server(config)


async def _fastagi(settings: Settings, stop: asyncio.Event) -> None:
    from .fastagi import serve

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
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
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
    from .api_keys import create_key

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
    from .queries import queries

    settings = _settings()

    async def go() -> None:
        pool = await database.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            row = await queries.accounts.set_rate_limit(
                pool, name=args.account, rate_limit_per_hour=args.per_hour
            )
        finally:
            await pool.close()
        if row is None:
            raise SystemExit(f"no account {args.account!r}")
        print(f"{row['name']}: {row['rate_limit_per_hour']} requests per hour")

    asyncio.run(go())


def cmd_keys_transport(args: argparse.Namespace) -> None:
    from .queries import queries

    settings = _settings()
    choice = None if args.transport == "default" else args.transport

    async def go() -> None:
        pool = await database.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            row = await queries.accounts.set_sms_transport(
                pool, name=args.account, sms_transport=choice)
        finally:
            await pool.close()
        if row is None:
            raise SystemExit(f"no account {args.account!r}")
        print(f"{row['name']}: SMS via {row['sms_transport'] or 'the default transport'}")

    asyncio.run(go())


def cmd_asterisk(args: argparse.Namespace) -> None:
    from .asterisk_sandbox import instances

    chosen = instances(_settings())
    names = [args.instance] if args.instance else list(chosen)
    for name in names:
        inst = chosen[name]
        if args.action == "up":
            inst.start()
            print(f"{name}: running ({inst.dir})")
        elif args.action == "down":
            inst.stop()
            print(f"{name}: stopped")
        elif args.action == "status":
            print(f"{name}: {'running' if inst.running() else 'stopped'} ({inst.dir})")
        elif args.action == "console":
            os.execvp(inst.console_command()[0], inst.console_command())


def cmd_carrier_messages(args: argparse.Namespace) -> None:
    from .asterisk_sandbox import instances
    from .carrier import received_sms

    for sms in received_sms(instances(_settings())["carrier"]):
        print(json.dumps(sms, ensure_ascii=False))


def cmd_carrier_calls(args: argparse.Namespace) -> None:
    from .asterisk_sandbox import instances
    from .carrier import received_calls

    for call in received_calls(instances(_settings())["carrier"]):
        print(json.dumps(call, ensure_ascii=False))


def cmd_settings(args: argparse.Namespace) -> None:
    for name, value, doc in _settings().describe():
        print(f"{name}={value}\n    {doc}")


def main(argv: list[str] | None = None) -> None:
    _logging()
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
    p = keys.add_parser("transport", help="set ACCOUNT's SMS transport")
    p.add_argument("account")
    p.add_argument("transport", choices=["ari-pjsip", "dongle-ami", "default"])
    p.set_defaults(func=cmd_keys_transport)

    p = sub.add_parser("asterisk", help="the sandbox's Asterisk instances")
    p.add_argument("action", choices=["up", "down", "status", "console"])
    p.add_argument("instance", nargs="?", choices=["gateway", "carrier"])
    p.set_defaults(func=cmd_asterisk)

    carrier = sub.add_parser("carrier", help="the carrier simulator").add_subparsers(
        dest="carrier_command", required=True
    )
    p = carrier.add_parser("messages", help="every SMS the carrier received, as JSON lines")
    p.set_defaults(func=cmd_carrier_messages)
    p = carrier.add_parser("calls", help="every call the carrier answered or refused, as JSON")
    p.set_defaults(func=cmd_carrier_calls)

    p = sub.add_parser("settings", help="every AMIVONO_* setting, its value and meaning")
    p.set_defaults(func=cmd_settings)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)
