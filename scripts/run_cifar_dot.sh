#!/usr/bin/env bash
# DOT (Zhao et al., ICCV 2023) as mdistiller's configs/cifar100/dot/*.yaml run it: KD (T 4,
# -r 0.1 -a 0.9) with the distillation-oriented trainer, delta 0.075, lr 0.05 (0.01 for the
# ShuffleV2 student), 240 epochs. --optimizer dot works with every method. Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "resnet32x4 resnet8x4" "vgg13 vgg8" "resnet32x4 ShuffleV2"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "./save/models/${T}_vanilla/ckpt_epoch_240.pth" \
        --distill kd --model_s "$S" -r 0.1 -a 0.9 --kd_T 4 --optimizer dot --dot_delta 0.075 \
        --trial 1 "$@"
done
