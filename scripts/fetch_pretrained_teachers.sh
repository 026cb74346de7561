#!/usr/bin/env bash
# Download RepDistiller's pretrained CIFAR-100 teachers into save/models/<name>_vanilla/
# (RepDistiller's links first, then the mdistiller and DIST_KD mirrors); see fetch_teachers.py.
# Usage: bash scripts/fetch_pretrained_teachers.sh [name ...]   (default: all six)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$(bash "$repo/scripts/setup_env.sh")/bin/python}"  # the project's environment
cd "$repo"
exec "$py" scripts/fetch_teachers.py "$@"
