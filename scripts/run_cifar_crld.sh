#!/usr/bin/env bash
# CRLD (Zhang et al., ACM MM 2024; arcaninez/CRLD fe42473) on the twelve CIFAR-100 pairs of the
# authors' configs, each at their cfg.py's settings (CE 1, within-view 2, cross-view 0.5, T 4,
# confidence thresholds 0.9 and 0.2: the defaults of --distill crld) and mdistiller's recipe
# (lr 0.05, 0.01 for the MobileNetV2 and ShuffleV2 students, applied unless given). A weak and
# a strong (RandAugment + Cutout) view of every image are made by DataLoader workers (--loader
# classic). Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every
# run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "resnet110 resnet32" "resnet32x4 resnet8x4" "resnet32x4 ShuffleV2" \
            "resnet32x4 wrn_16_2" "ResNet50 MobileNetV2" "resnet56 resnet20" \
            "vgg13 MobileNetV2" "vgg13 vgg8" "wrn_40_2 MobileNetV2" "wrn_40_2 resnet8x4" \
            "wrn_40_2 wrn_16_2" "wrn_40_2 wrn_40_1"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "./save/models/${T}_vanilla/ckpt_epoch_240.pth" \
        --distill crld --model_s "$S" --loader classic --trial 1 "$@"
done
