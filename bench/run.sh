#!/usr/bin/env bash
# Run the benchmark from anywhere: bench/run.sh [--quick] [--scale] [...]
# Uses the project's virtualenv when there is one (pgqueue must be importable).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${BENCH_PYTHON:-}"
if [[ -z "$python" ]]; then
    for candidate in .venv/bin/python venv/bin/python /work/venv/bin/python; do
        if [[ -x "$candidate" ]]; then python="$candidate"; break; fi
    done
fi
exec "${python:-python3}" -m bench "$@"
