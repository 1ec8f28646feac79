"""The layering of service/, read from the source with ast (nothing imported):

- no module of service imports the dev sandbox (`sandbox`);
- store, delivery, telephony and domain never import service.http;
- domain imports no other part of service but service.domain and service.settings;
- starlette is imported only in service/http;
- no import cycle between service modules.

Every import counts, also those inside functions, and relative ones resolved.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module (or package) named, absolute
    line: int

    def __str__(self) -> str:
        return f"{MODULES[self.importer].relative_to(SERVICE.parent)}:{self.line}: {self.target}"


def statements(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every statement, at any depth (in functions, classes, if, try, with,
    match...): an import is a statement, so expressions need no visit."""
    for node in nodes:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                yield from statements(children)


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in statements(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield Import(name, source, node.lineno)
            # `from service.domain import sms_text` imports the module sms_text.
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    yield Import(name, sub, node.lineno)


IMPORTS: list[Import] = [i for name, path in MODULES.items() for i in imports_of(name, path)]


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [str(i) for i in IMPORTS if within(i.importer, *importers)
            and within(i.target, *forbidden)]


def test_the_sources_are_found() -> None:
    assert {"service.settings", "service.domain.sms_text", "service.http.app",
            "service.delivery.queue_worker"} <= MODULES.keys()
    # Imports inside functions are seen (the CLI imports its commands lazily).
    assert any(i.importer == "service.operator.cli" and i.target == "service.http.app"
               for i in IMPORTS)


def test_service_never_imports_the_sandbox() -> None:
    assert violations(("service",), ("sandbox",)) == []


@pytest.mark.parametrize("layer", ["service.store", "service.delivery", "service.telephony",
                                   "service.domain"])
def test_only_http_and_the_entry_points_import_http(layer: str) -> None:
    assert violations((layer,), ("service.http",)) == []


def test_domain_imports_only_domain_and_settings() -> None:
    bad = [str(i) for i in IMPORTS if within(i.importer, "service.domain")
           and within(i.target, "service")
           and not within(i.target, "service.domain", "service.settings")]
    assert bad == []


def test_starlette_only_in_http() -> None:
    bad = [str(i) for i in IMPORTS if within(i.target, "starlette")
           and not within(i.importer, "service.http")]
    assert bad == []


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.importer:
            graph[i.importer].add(i.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if color[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if color[nxt] == WHITE and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        color[node] = BLACK
        return None

    for node in sorted(graph):
        if color[node] == WHITE and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_service_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])
