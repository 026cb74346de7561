#!/usr/bin/env bash
# Fetch TinyImageNet-200 into <data_folder>/tiny-imagenet-200 and lay its validation images out
# in class folders (val/<wnid>/<image>.JPEG, from val/val_annotations.txt), which is how
# transfer_student.py (torchvision's ImageFolder) reads them. Safe to run again.
# Usage: bash scripts/get_tinyimagenet.sh [data_folder (./data)] [zip (downloaded if missing)]
set -euo pipefail
data="${1:-./data}"
zip="${2:-$data/tiny-imagenet-200.zip}"
url=http://cs231n.stanford.edu/tiny-imagenet-200.zip
if [ ! -f "$zip" ]; then
    mkdir -p "$(dirname "$zip")"
    echo "downloading $url (about 240 MB)" >&2
    curl -fL --retry 3 -o "$zip.part" "$url"  # a partial file never takes the zip's name
    mv "$zip.part" "$zip"
fi
if [ ! -d "$data/tiny-imagenet-200/train" ]; then
    mkdir -p "$data"
    python3 -m zipfile -e "$zip" "$data"
fi
python3 - "$data/tiny-imagenet-200/val" <<'PY'
import os, sys
val = sys.argv[1]
images = os.path.join(val, 'images')
if os.path.isdir(images):
    with open(os.path.join(val, 'val_annotations.txt')) as f:
        for line in f:
            name, wnid = line.split('\t')[:2]
            os.makedirs(os.path.join(val, wnid), exist_ok=True)
            os.replace(os.path.join(images, name), os.path.join(val, wnid, name))
    os.rmdir(images)
print(f'TinyImageNet-200 ready in {os.path.dirname(val)}')
PY
