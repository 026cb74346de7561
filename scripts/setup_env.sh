#!/usr/bin/env bash
# Create (or reuse) the virtual environment with requirements.txt installed, and print its path.
# KD_VENV chooses where it lives (default: .venv in the repository). It is rebuilt from nothing
# whenever requirements.txt changes. KD_DALI=1 also installs the optional requirements-dali.txt
# into it (and again when that file changes); without KD_DALI an installed DALI stays.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KD_VENV:-$repo/.venv}"
digest() { sha256sum "$1" | cut -d' ' -f1; }
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$(digest "$repo/requirements.txt")" ]; then
    echo "setting up $venv (a few minutes the first time)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r "$repo/requirements.txt" >&2
    digest "$repo/requirements.txt" > "$venv/.requirements.sha256"
fi
if [ "${KD_DALI:-0}" = 1 ] && [ "$(cat "$venv/.requirements-dali.sha256" 2>/dev/null)" != "$(digest "$repo/requirements-dali.txt")" ]; then
    echo "adding NVIDIA DALI to $venv" >&2
    "$venv/bin/python" -m pip install -q -r "$repo/requirements-dali.txt" >&2
    digest "$repo/requirements-dali.txt" > "$venv/.requirements-dali.sha256"
fi
echo "$venv"
