#!/usr/bin/env bash
# MLLD (Jin et al., CVPR 2023) on the CIFAR-100 pairs of the paper's table, as the authors'
# configs set it: -r 0.1 -a 0.9 at T 4, 480 epochs (960 for resnet32x4 -> ShuffleV1/V2), lr
# 0.025 (0.01 for MobileNetV2 and ShuffleNet students), decayed at 150/180/210; those epoch
# and lr defaults apply unless given. A weak and a strong (RandAugment + Cutout) view of every
# image are made by DataLoader workers (--loader classic). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "resnet32x4 resnet8x4" "vgg13 vgg8" "wrn_40_2 wrn_40_1" "wrn_40_2 wrn_16_2" \
            "resnet56 resnet20" "resnet110 resnet32" "resnet110 resnet20" \
            "resnet32x4 ShuffleV2" "resnet32x4 wrn_16_2" "resnet32x4 wrn_40_2" \
            "wrn_40_2 resnet8x4" "wrn_40_2 MobileNetV2" "vgg13 MobileNetV2" \
            "ResNet50 MobileNetV2"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "./save/models/${T}_vanilla/ckpt_epoch_240.pth" \
        --distill mlld --model_s "$S" -r 0.1 -a 0.9 --kd_T 4 --loader classic --trial 1 "$@"
done
