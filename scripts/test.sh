#!/usr/bin/env bash
# Set up everything and run the whole test suite against a real PostgreSQL
# and two real Asterisk instances (the tests start and stop them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

ruff check service tests bench
exec python -m pytest "$@"
