#!/usr/bin/env bash
# CAT-KD (Guo et al., CVPR 2023) with the authors' CIFAR-100 configs (GzyAftermath/CAT-KD
# 4467073, configs/cifar100/CAT_KD/*.yaml): CE 1, the CAT weight beta (-b), the CAM resolution
# and the normalisation per pair; lr 0.05 (0.01 for MobileNetV2/ShuffleNets), 240 epochs. The
# authors' student classifier has no bias (held at 0 here). The repository publishes no figures.
# Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for setting in \
    "resnet32x4:resnet8x4 15 2 0" \
    "resnet56:resnet20 0.7 2 0" \
    "resnet110:resnet32 1.8 2 0" \
    "wrn_40_2:wrn_16_2 12 2 0" \
    "wrn_40_2:wrn_40_1 1.5 2 0" \
    "vgg13:vgg8 4.5 2 0" \
    "vgg13:MobileNetV2 15 2 1" \
    "ResNet50:MobileNetV2 40 2 1" \
    "resnet32x4:ShuffleV1 600 4 1" \
    "resnet32x4:ShuffleV2 600 4 1" \
    "wrn_40_2:ShuffleV1 80 4 1"; do
    read -r pair beta resolution normalize <<< "$setting"
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill catkd -r 1 -a 0 -b "$beta" \
        --catkd_resolution "$resolution" --catkd_normalize "$normalize" --trial 1 "$@"
done
