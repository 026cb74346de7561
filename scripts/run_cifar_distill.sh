#!/usr/bin/env bash
# RepDistiller's distillation commands, resnet32x4 -> resnet8x4 on CIFAR-100 (240 epochs each).
# Fetch the teacher first: bash scripts/fetch_pretrained_teachers.sh resnet32x4
# Extra arguments are passed to every run, e.g. --gpu_id 0 or --trial 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python}"
T=./save/models/resnet32x4_vanilla/ckpt_epoch_240.pth

# KD
$PY train_student.py --path_t $T --distill kd --model_s resnet8x4 -r 0.1 -a 0.9 -b 0 --trial 1 "$@"
