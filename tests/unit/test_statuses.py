"""service/domain/statuses.py and the SQL agree: SQL computes the statuses and
holds the outcomes, and cannot import Python, so this reads the .sql files as
text. Pure: no database.

Every `... AS status` expression and every `CHECK (outcome IN (...))` in the
SQL must be one this test knows how to read and whose owner it knows; a new
one it cannot place fails, rather than go unchecked.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from service.domain import refusals
from service.domain.phone_numbers import E164_PATTERN
from service.domain.statuses import (
    FieldCode,
    SmsAttemptOutcome,
    SmsStatus,
    VoiceAttemptOutcome,
    VoiceOutcome,
    VoiceStatus,
    values,
)

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "service" / "store"
MIGRATIONS = sorted((STORE / "migrations").glob("*.sql"))  # applied in this order
STATEMENTS = sorted((STORE / "sql").glob("*.sql"))  # named statements, one file a table

# Who owns a status: the views, and the statements of a table's file (which
# return rows "as the view shows them").
STATUS_OF: dict[str, type[StrEnum]] = {
    "sms_message_view": SmsStatus, "sms_messages": SmsStatus,
    "voice_message_view": VoiceStatus, "voice_messages": VoiceStatus,
}
OUTCOME_OF: dict[str, type[StrEnum]] = {
    "sms_attempts": SmsAttemptOutcome,
    "voice_messages": VoiceOutcome,
    "voice_attempts": VoiceAttemptOutcome,
}
# The outcomes a statement file writes or compares (its attempts' outcomes: a
# message's own outcome is a subset of its attempts').
FILE_OUTCOMES: dict[str, type[StrEnum]] = {
    "sms_messages": SmsAttemptOutcome, "sms_attempts": SmsAttemptOutcome,
    "voice_messages": VoiceAttemptOutcome, "voice_attempts": VoiceAttemptOutcome,
}

LITERAL = r"'((?:[^']|'')*)'"
STATUS_CASE = re.compile(
    # From the CASE nearest to `END AS status` (no other CASE in between).
    r"\bCASE\b((?:(?!\bCASE\b).)*?)\bEND\s+AS\s+status\b", re.S | re.I)
STATUS_LITERAL = re.compile(LITERAL + r"\s*(?:::\s*text\s+)?AS\s+status\b", re.I)
ANY_STATUS = re.compile(r"\bAS\s+status\b", re.I)
RESULT = re.compile(r"\b(?:THEN|ELSE)\s+('(?:[^']|'')*'|[\w.]+)", re.I)
OUTCOME_CHECK = re.compile(r"CHECK\s*\(\s*outcome\s+IN\s*\(([^)]*)\)\s*\)", re.I)
OWNER = re.compile(r"\b(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|TABLE)|ALTER\s+TABLE)\s+(\w+)",
                   re.I)
OUTCOME_USE = re.compile(r"\boutcome\s*(?:=|<>|!=)\s*(CASE\b.*?\bEND\b|" + LITERAL + ")",
                         re.S | re.I)


def code(path: Path) -> str:
    """The SQL without comments and dollar-quoted bodies (the triggers hold no status)."""
    text = re.sub(r"\$\$.*?\$\$", "''", path.read_text(), flags=re.S)
    return re.sub(r"--[^\n]*", "", text)


def literals(text: str) -> set[str]:
    return {m.replace("''", "'") for m in re.findall(LITERAL, text)}


def owner_at(text: str, pos: int) -> str:
    """The view or table the SQL at `pos` of a migration belongs to."""
    owners = OWNER.findall(text, 0, pos)
    assert owners, f"no CREATE VIEW/TABLE before {text[pos:pos + 60]!r}"
    return owners[-1]


def outcome_checks() -> dict[str, set[str]]:
    """Table -> the outcomes its latest CHECK allows."""
    found: dict[str, set[str]] = {}
    for path in MIGRATIONS:
        text = code(path)
        for m in OUTCOME_CHECK.finditer(text):
            found[owner_at(text, m.start())] = literals(m.group(1))
    return found


def status_expressions() -> list[tuple[str, str, set[str]]]:
    """(where, owner, the statuses it can produce) of every status in the SQL.
    The views count in their latest definition only."""
    checks = outcome_checks()
    found: dict[tuple[str, str], set[str]] = {}
    for path in [*MIGRATIONS, *STATEMENTS]:
        text = code(path)
        understood = 0
        for m in STATUS_CASE.finditer(text):
            owner = owner_at(text, m.start()) if path in MIGRATIONS else path.stem
            produced: set[str] = set()
            for result in RESULT.findall(m.group(1)):
                if result.startswith("'"):
                    produced |= literals(result)
                elif result.endswith(".outcome"):
                    # The view shows a finished message's outcome as its status.
                    alias = result.split(".")[0]
                    table = re.search(rf"\bFROM\s+(\w+)\s+(?:AS\s+)?{alias}\b", text[m.end():])
                    assert table, f"{path.name}: the table of {result!r}"
                    produced |= checks[table.group(1)]
                else:
                    pytest.fail(f"{path.name}: status from {result!r}, which this test"
                                " cannot read")
            found[(path.name if path in STATEMENTS else "migrations", owner)] = produced
            understood += 1
        for n, m in enumerate(STATUS_LITERAL.finditer(text), 1):
            found[(path.name, f"{path.stem} (literal {n})")] = literals(m.group(0))
            understood += 1
        assert understood == len(ANY_STATUS.findall(text)), (
            f"{path.name} has a status expression this test cannot read")
    return [(where, owner, produced) for (where, owner), produced in found.items()]


def test_the_sql_has_status_expressions_to_check():
    owners = {owner for _, owner, _ in status_expressions()}
    assert {"sms_message_view", "voice_message_view"} <= owners


@pytest.mark.parametrize("where, owner, produced", status_expressions(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_status_the_sql_produces_is_declared(where, owner, produced):
    enum = STATUS_OF.get(owner.split(" ")[0])
    assert enum is not None, f"{where}: a status of {owner}, which statuses.py does not own"
    assert produced <= set(values(enum)), (
        f"{where} ({owner}) produces {sorted(produced - set(values(enum)))},"
        f" missing from {enum.__name__}")


@pytest.mark.parametrize("view, enum", [("sms_message_view", SmsStatus),
                                        ("voice_message_view", VoiceStatus)])
def test_every_declared_status_is_produced_by_its_view(view, enum):
    [produced] = [p for _, owner, p in status_expressions() if owner == view]
    assert produced == set(values(enum)), (
        f"{view} and {enum.__name__} differ: the view produces {sorted(produced)}")


def test_outcome_checks_are_the_declared_outcomes():
    checks = outcome_checks()
    assert set(checks) == set(OUTCOME_OF), "an outcome CHECK on a table this test does not know"
    for table, enum in OUTCOME_OF.items():
        assert checks[table] == set(values(enum)), f"{table}'s CHECK and {enum.__name__}"


@pytest.mark.parametrize("path", STATEMENTS, ids=lambda p: p.name)
def test_outcomes_the_statements_write_are_declared(path):
    uses = [literals(m.group(1)) for m in OUTCOME_USE.finditer(code(path))]
    if not uses:
        return
    enum = FILE_OUTCOMES.get(path.stem)
    assert enum is not None, f"{path.name} uses outcomes; say whose in FILE_OUTCOMES"
    for used in uses:
        assert used <= set(values(enum)), f"{path.name}: {sorted(used)} vs {enum.__name__}"


def test_outcomes_the_python_writes_are_declared():
    """Where the dispatcher writes outcomes as literals (CallEnd, SendResult, the Q.850
    table), they are declared outcomes."""
    source = "\n".join(p.read_text() for p in (ROOT / "service").rglob("*.py"))
    calls = set(re.findall(r'\bCallEnd\(\s*"([^"]*)"', source))
    causes = set(re.findall(r'^\s*\d+:\s*\("([^"]*)",\s*(?:True|False)\)', source, re.M))
    sends = set(re.findall(r'\bSendResult\(\s*"([^"]*)"', source))
    assert calls and causes and sends, "the patterns above no longer find the outcomes"
    assert calls | causes <= set(values(VoiceOutcome))
    assert sends <= set(values(SmsAttemptOutcome))


def test_voice_statuses_are_its_progress_then_its_outcomes():
    assert values(VoiceStatus) == ["queued", "calling", "scheduled", *values(VoiceOutcome)]
    assert values(VoiceAttemptOutcome) == [*values(VoiceOutcome), "unknown"]


def test_field_codes_are_the_documented_ones():
    # README's "Using the API" names these; a new code must be documented there too.
    readme = (ROOT / "README.md").read_text()
    for field_code in values(FieldCode):
        assert f"`{field_code}`" in readme, field_code
    # Until refusals.py takes its codes from statuses.py, the two must not differ.
    other = getattr(refusals, "FieldCode", FieldCode)
    assert values(other) == values(FieldCode)


def test_the_sql_checks_numbers_with_the_one_e164_pattern():
    # The tables' CHECKs are the one spelling SQL cannot import.
    checks = re.findall(r"CHECK\s*\(\s*\w+_number\s*~\s*'([^']*)'\s*\)",
                        "".join(code(p) for p in MIGRATIONS))
    assert checks, "no number CHECK found"
    assert set(checks) == {f"^{E164_PATTERN}$"}
