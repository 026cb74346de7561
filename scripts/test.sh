#!/usr/bin/env bash
# Install what is needed (first run only) and run the test suite on the CPU, one test process
# per core (KD_TEST_WORKERS sets another count; 0 runs the tests in this process).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/setup_env.sh")"
cd "$repo"
exec "$venv/bin/python" -m pytest -q -n "${KD_TEST_WORKERS:-auto}" --dist worksteal "$@"
