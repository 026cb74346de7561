#!/usr/bin/env bash
# Train RepDistiller's CIFAR-100 teachers and the students' baselines (240 epochs each).
# Extra arguments are passed to every run, e.g. --gpu_id 0 or --trial 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

# teachers
$PY train_teacher.py --model wrn_40_2 "$@"
$PY train_teacher.py --model resnet56 "$@"
$PY train_teacher.py --model resnet110 "$@"
$PY train_teacher.py --model resnet32x4 "$@"
$PY train_teacher.py --model vgg13 "$@"
$PY train_teacher.py --model ResNet50 "$@"

# student baselines (lr 0.01 is chosen automatically for MobileNetV2 / ShuffleV1 / ShuffleV2)
$PY train_teacher.py --model wrn_16_2 "$@"
$PY train_teacher.py --model wrn_40_1 "$@"
$PY train_teacher.py --model resnet20 "$@"
$PY train_teacher.py --model resnet32 "$@"
$PY train_teacher.py --model resnet8x4 "$@"
$PY train_teacher.py --model vgg8 "$@"
$PY train_teacher.py --model MobileNetV2 "$@"
$PY train_teacher.py --model ShuffleV1 "$@"
$PY train_teacher.py --model ShuffleV2 "$@"
