"""The sandbox's own `amivono` commands (`asterisk`, `carrier`), plugged into
the operator CLI through the `amivono.commands` entry point."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from sandbox.carrier_logs import received_calls, received_sms, sent_reports
from sandbox.carrier_sms import CarrierSendError, send_sms
from sandbox.instances import MAX_GATEWAYS, ari_url_of, gateway_index, instances
from sandbox.settings import SandboxSettings


def cmd_asterisk(args: argparse.Namespace) -> None:
    settings = SandboxSettings.from_env()
    if args.action == "settings":
        for name, value, doc in settings.describe(only_own=True):
            print(f"{name}={value}\n    {doc}")
        return
    chosen = instances(settings, gateways=max(args.gateways, _gateway_count(args.instance)))
    names = [args.instance] if args.instance else list(chosen)
    for name in names:
        inst = chosen[name]
        if args.action == "up":
            inst.start()
            print(f"{name}: running ({inst.dir})")
            if inst.role == "gateway" and args.gateways > 1:
                print(f"    amivono gateways add {name} --ari-url {ari_url_of(settings, name)} "
                      f"--ari-user {settings.ari_user} --ari-password {settings.ari_password}")
        elif args.action == "down":
            inst.stop()
            print(f"{name}: stopped")
        elif args.action == "status":
            print(f"{name}: {'running' if inst.running() else 'stopped'} ({inst.dir})")
        elif args.action == "console":
            os.execvp(inst.console_command()[0], inst.console_command())


def _gateway_count(instance: str | None) -> int:
    index = gateway_index(instance) if instance else -1
    return index + 1 if index > 0 else 1


def _instance_name(text: str) -> str:
    if text != "carrier" and gateway_index(text) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: gateway, gateway2 ... gateway{MAX_GATEWAYS}, or carrier")
    return text


def cmd_carrier_messages(args: argparse.Namespace) -> None:
    for sms in received_sms(instances(SandboxSettings.from_env())["carrier"]):
        print(json.dumps(sms, ensure_ascii=False))


def cmd_carrier_calls(args: argparse.Namespace) -> None:
    for call in received_calls(instances(SandboxSettings.from_env())["carrier"]):
        print(json.dumps(call, ensure_ascii=False))


def cmd_carrier_reports(args: argparse.Namespace) -> None:
    for report in sent_reports(instances(SandboxSettings.from_env())["carrier"]):
        print(json.dumps(report, ensure_ascii=False))


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def cmd_carrier_send_sms(args: argparse.Namespace) -> None:
    try:
        sent = send_sms(SandboxSettings.from_env(), args.sender, args.recipient, args.text,
                        headers=dict(args.header))
    except CarrierSendError as exc:
        print(json.dumps({"sent": False, "error": str(exc)}, ensure_ascii=False))
        sys.exit(1)
    print(json.dumps(sent, ensure_ascii=False))


def register(sub: Any) -> None:
    """Add the sandbox's commands to `amivono` (argparse sub-parsers)."""
    p = sub.add_parser("asterisk", help="the sandbox's Asterisk instances")
    p.add_argument("action", choices=["up", "down", "status", "console", "settings"])
    p.add_argument("instance", nargs="?", type=_instance_name,
                   help="gateway, gateway2 ..., or carrier (default: all)")
    p.add_argument("--gateways", type=int, default=1, choices=range(1, MAX_GATEWAYS + 1),
                   metavar="N", help="gateway nodes, all trunked to the one carrier "
                                     f"(1 to {MAX_GATEWAYS}; default 1); `up` prints the "
                                     "`amivono gateways add` line of each")
    p.set_defaults(func=cmd_asterisk)

    carrier = sub.add_parser("carrier", help="the carrier simulator").add_subparsers(
        dest="carrier_command", required=True
    )
    p = carrier.add_parser("messages", help="every SMS the carrier received, as JSON lines")
    p.set_defaults(func=cmd_carrier_messages)
    p = carrier.add_parser("calls", help="every call the carrier answered or refused, as JSON")
    p.set_defaults(func=cmd_carrier_calls)
    p = carrier.add_parser("reports", help="every delivery report the carrier sent, as JSON lines")
    p.set_defaults(func=cmd_carrier_reports)
    p = carrier.add_parser(
        "send-sms", help="a phone sends an SMS to the gateway over the trunk (one JSON line)"
    )
    p.add_argument("sender", metavar="FROM", help="the phone's number, e.g. +46736265449")
    p.add_argument("recipient", metavar="TO", help="the gateway's number it is sent to")
    p.add_argument("text")
    p.add_argument("--header", action="append", type=_header, default=[], metavar="NAME:VALUE",
                   help="an extra SIP header on the MESSAGE (repeatable)")
    p.set_defaults(func=cmd_carrier_send_sms)
