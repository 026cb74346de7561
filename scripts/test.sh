#!/usr/bin/env bash
# Install what is needed (first run only) and run the test suite on the CPU.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/setup_env.sh")"
cd "$repo"
exec "$venv/bin/python" -m pytest -q "$@"
