#!/usr/bin/env bash
# Create (or reuse) the virtual environment with requirements.txt installed, and print its path.
# KD_VENV chooses where it lives (default: .venv in the repository); KD_DALI=1 adds the optional
# requirements-dali.txt. It is rebuilt from nothing whenever what it should hold changes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KD_VENV:-$repo/.venv}"
stamp="$venv/.requirements.sha256"
requirements=("$repo/requirements.txt")
if [ "${KD_DALI:-0}" = 1 ]; then requirements+=("$repo/requirements-dali.txt"); fi
want="$(cat "${requirements[@]}" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setting up $venv (a few minutes the first time)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    for file in "${requirements[@]}"; do
        "$venv/bin/python" -m pip install -q -r "$file" >&2
    done
    echo "$want" > "$stamp"
fi
echo "$venv"
