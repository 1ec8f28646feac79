"""The harness that runs `amivono` commands as processes for the tests and the
benchmarks (asterisk/sandbox/processes.py): its logs have fixed names and are
appended to, so a readiness wait must only see what this run wrote."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sandbox import processes

# Waits for a go-file, then logs its readiness line and stays up.
READY_WHEN_TOLD = """
import pathlib, sys, time
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
print("dispatcher d1 started", flush=True)
time.sleep(120)
"""


def test_a_readiness_line_from_an_earlier_run_does_not_count(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    stale = "=== an earlier run\ndispatcher d1 started\n"
    (log_dir / "d1.log").write_text(stale)
    go = tmp_path / "go"
    program = tmp_path / "ready_when_told.py"
    program.write_text(READY_WHEN_TOLD)
    proc = processes.Proc("d1", [sys.executable, str(program), str(go)], log_dir)
    try:
        # The old line is in the file, but this run has not written it: the wait
        # must time out (not match at once), with the process still running.
        with pytest.raises(processes.NotReady, match="timed out"):
            proc.wait_for_line("dispatcher d1 started", timeout=0.5)
        assert proc.alive()
        assert "started" not in proc.log()
        go.touch()
        proc.wait_for_line("dispatcher d1 started", timeout=60)
        assert proc.log() == "dispatcher d1 started\n"
    finally:
        proc.stop()
    # Appended, not truncated: the earlier run's lines are kept for whoever reads
    # the file, and this run's header tells the runs apart.
    text = (log_dir / "d1.log").read_text()
    assert text.startswith(stale)
    header, _, rest = text[len(stale):].partition("\n")
    assert header.startswith("=== ") and header.endswith(f"{program} {go}")
    assert rest == "dispatcher d1 started\n"


def test_a_process_that_exits_is_not_waited_for(tmp_path: Path) -> None:
    """The wait reports the exit and this run's output, not a timeout."""
    proc = processes.Proc("quits", [sys.executable, "-c", "print('bad setting'); exit(3)"],
                          tmp_path)
    try:
        with pytest.raises(processes.NotReady, match="quits exited:\n.*bad setting"):
            proc.wait_for_line("listening", timeout=20)
    finally:
        proc.stop()
