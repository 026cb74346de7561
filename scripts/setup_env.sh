#!/usr/bin/env bash
# Create (or reuse) the virtual environment with requirements.txt installed, and print its path.
# KD_VENV chooses where it lives (default: .venv in the repository). It is rebuilt from nothing
# whenever requirements.txt changes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KD_VENV:-$repo/.venv}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$repo/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setting up $venv (a few minutes the first time)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    "$venv/bin/python" -m pip install -q -r "$repo/requirements.txt" >&2
    echo "$want" > "$stamp"
fi
echo "$venv"
