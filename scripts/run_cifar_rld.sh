#!/usr/bin/env bash
# RLD (Sun et al., "Knowledge Distillation with Refined Logits") as the authors' README runs it
# (zju-SWJ/RLD d54578f): --same-t RLD.ALPHA 1. RLD.BETA 8. RLD.T 4., i.e. alpha 1, beta 8,
# T = alpha_T = 4, warm-up 20 epochs, CE 1, on the 14 pairs of configs/cifar100/rld (lr 0.05,
# 0.01 for the MobileNetV2 and ShuffleV2 students, 240 epochs). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run (e.g.
# --logit_stand, which the authors' code also takes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in ResNet50:MobileNetV2 resnet110:resnet20 resnet110:resnet32 resnet32x4:ShuffleV2 \
            resnet32x4:resnet8x4 resnet32x4:wrn_16_2 resnet32x4:wrn_40_2 resnet56:resnet20 \
            vgg13:MobileNetV2 vgg13:vgg8 wrn_40_2:MobileNetV2 wrn_40_2:resnet8x4 \
            wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill rld --rld_alpha 1 --rld_beta 8 --rld_T 4 -r 1 \
        --trial 1 "$@"
done
