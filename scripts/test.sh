#!/usr/bin/env bash
# Set up everything and run the whole test suite: first the unit layer
# (tests/unit: no PostgreSQL, no Asterisk, under a second), then, if it
# passed, the rest against a real PostgreSQL and two real Asterisk instances
# (the tests start and stop them). Arguments go to pytest, for both runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

ruff check service tests bench
mypy  # strict, on service/ and the sandbox (pyproject.toml [tool.mypy])
# Bytecode caches on: the unit layer is mostly module imports.
unset PYTHONDONTWRITEBYTECODE

# Test paths given (./scripts/test.sh tests/test_voice.py -x): run just those.
for arg in "$@"; do
  if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
    exec python -m pytest "$@"
  fi
done

# Exit status 5 is pytest's "no tests collected" (a -k that picks none here).
unit=0
# Without the integration conftest and the schemathesis/hypothesis plugins:
# they are most of its start-up time.
python -m pytest "$@" --confcutdir=tests/unit -p no:schemathesis -p no:hypothesispytest -p no:xdist \
  tests/unit || unit=$?
if (( unit != 0 && unit != 5 )); then
  echo "test.sh: the unit tests failed; not starting the integration suite" >&2
  exit "$unit"
fi
rest=0
# The integration suite mostly waits on real calls and timers: two workers
# (pytest-xdist, whole files each, each in its own test slot) halve its time.
workers="${AMIVONO_TEST_WORKERS:-2}"
parallel=()
if (( workers > 1 )); then parallel=(-n "$workers" --dist loadfile); fi
python -m pytest "${parallel[@]}" "$@" --ignore=tests/unit || rest=$?
if (( rest == 5 && unit == 0 )); then exit 0; fi
exit "$rest"
