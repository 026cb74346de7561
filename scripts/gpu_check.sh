#!/usr/bin/env bash
# Check the toolbox on a GPU in a few minutes (see scripts/gpu_check.py; --list shows the
# checks). On a machine without a GPU it says so and exits with status 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment
exec $PY scripts/gpu_check.py "$@"
