#!/usr/bin/env bash
# Run one benchmark (or all) from the project root:
#   bash bench/run.sh api_accept|sms_end_to_end|voice_calls|queue_scale|uploads|faults|all [ARGS...]
# (faults, bench/faults.py, runs on a stack apart and needs no lock)
# Each bench installs what it lacks, uses its own database, ports and Asterisk
# folder (bench/stack.py), prints its figures and ratios, and stops what it
# started. See bench/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  echo "bench: no .venv; run 'bash scripts/setup.sh' (or scripts/run.sh) once first" >&2
  exit 2
fi
names=(api_accept sms_end_to_end voice_calls queue_scale uploads faults)
name="${1:-}"
shift || true
if [ "$name" = all ]; then
  for n in "${names[@]}"; do .venv/bin/python "bench/$n.py"; done
  exit 0
fi
for n in "${names[@]}"; do
  if [ "$name" = "$n" ]; then exec .venv/bin/python "bench/$n.py" "$@"; fi
done
echo "usage: bash bench/run.sh {$(IFS='|'; echo "${names[*]}")|all} [ARGS...]" >&2
exit 2
