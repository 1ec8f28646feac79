"""The unit layer runs without PostgreSQL, Asterisk or any other process.

A unit test that asks for a fixture of tests/conftest.py (the database, the
Asterisk instances, the gateway's processes) fails before that fixture is set
up, and while a unit test runs, connecting a socket or starting a process
fails it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest


class NotInUnitTests(AssertionError):
    pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up (session ones included)."""
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in (info.name2fixturedefs.items() if info else ()):
        if defs and getattr(defs[-1].func, "__module__", "") == "tests.conftest":
            raise NotInUnitTests(
                f"{item.nodeid} uses the integration fixture {name!r} of tests/conftest.py")


@pytest.fixture(autouse=True, scope="package")
def _no_network_no_processes() -> Iterator[None]:
    # Once for the whole layer (per test it cost a third of the run), and only for
    # it: `pytest tests` runs the integration tests after it in the same process.
    def refuse_connect(self: socket.socket, address: Any) -> None:
        raise NotInUnitTests(f"a unit test connected a socket to {address!r}")

    def refuse_process(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        raise NotInUnitTests(f"a unit test started a process: {args[0] if args else kwargs}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse_connect)
        patch.setattr(socket.socket, "connect_ex", refuse_connect)
        patch.setattr(subprocess.Popen, "_execute_child", refuse_process)
        yield
