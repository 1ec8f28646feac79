"""The sandbox's own `amivono` commands (`asterisk`, `carrier`), plugged into
the operator CLI through the `amivono.commands` entry point."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from sandbox.carrier_logs import received_calls, received_sms
from sandbox.instances import instances
from sandbox.settings import SandboxSettings


def cmd_asterisk(args: argparse.Namespace) -> None:
    settings = SandboxSettings.from_env()
    if args.action == "settings":
        for name, value, doc in settings.describe(only_own=True):
            print(f"{name}={value}\n    {doc}")
        return
    chosen = instances(settings)
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
    for sms in received_sms(instances(SandboxSettings.from_env())["carrier"]):
        print(json.dumps(sms, ensure_ascii=False))


def cmd_carrier_calls(args: argparse.Namespace) -> None:
    for call in received_calls(instances(SandboxSettings.from_env())["carrier"]):
        print(json.dumps(call, ensure_ascii=False))


def register(sub: Any) -> None:
    """Add the sandbox's commands to `amivono` (argparse sub-parsers)."""
    p = sub.add_parser("asterisk", help="the sandbox's Asterisk instances")
    p.add_argument("action", choices=["up", "down", "status", "console", "settings"])
    p.add_argument("instance", nargs="?", choices=["gateway", "carrier"])
    p.set_defaults(func=cmd_asterisk)

    carrier = sub.add_parser("carrier", help="the carrier simulator").add_subparsers(
        dest="carrier_command", required=True
    )
    p = carrier.add_parser("messages", help="every SMS the carrier received, as JSON lines")
    p.set_defaults(func=cmd_carrier_messages)
    p = carrier.add_parser("calls", help="every call the carrier answered or refused, as JSON")
    p.set_defaults(func=cmd_carrier_calls)
