#!/usr/bin/env bash
# Download RepDistiller's pretrained CIFAR-100 teachers into save/models/<name>_vanilla/.
# Usage: bash scripts/fetch_pretrained_teachers.sh [name ...]   (default: all six)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base_url="${TEACHER_URL:-http://shape2prog.csail.mit.edu/repo}"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(wrn_40_2 resnet56 resnet110 resnet32x4 vgg13 ResNet50)
failed=0
for name in "${names[@]}"; do
    dest="save/models/${name}_vanilla/ckpt_epoch_240.pth"
    if [ -s "$dest" ]; then echo "have $dest"; continue; fi
    mkdir -p "$(dirname "$dest")"
    echo "fetching $name"
    # -C - resumes a partial download; the file is moved into place only when complete.
    if curl -fL --retry 2 --connect-timeout 20 -C - -o "$dest.part" "$base_url/${name}_vanilla/ckpt_epoch_240.pth"; then
        mv "$dest.part" "$dest"
    else
        echo "could not download $name from $base_url (offline, or the link is gone); set TEACHER_URL to a mirror or train it: python train_teacher.py --model $name" >&2
        failed=1
    fi
done
exit $failed
