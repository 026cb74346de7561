#!/usr/bin/env bash
# A three-minute, download-free tour on the CPU: train a resnet20 teacher on the synthetic data
# set, distil it into resnet8 with KD, and print both accuracies. Outputs go to save/demo/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/scripts/setup_env.sh")"
cd "$repo"
rm -rf save/demo  # the demo's own outputs from an earlier run
common=(--dataset synthetic --epochs 4 --lr_decay_epochs 3 --num_workers 2 --save_dir save/demo)
"$venv/bin/python" train_teacher.py --model resnet20 "${common[@]}"
teacher=save/demo/models/resnet20_synthetic_lr_0.05_decay_0.0005_trial_0/resnet20_last.pth
"$venv/bin/python" train_student.py --path_t "$teacher" --model_s resnet8 --distill kd \
    -r 0.1 -a 0.9 -b 0 "${common[@]}" --trial demo
