#!/usr/bin/env bash
# MGD (Yang et al., ECCV 2022) for classification on RepDistiller's CIFAR-100 pairs whose last
# stage maps have the same size. The authors ran no CIFAR-100 pair of RepDistiller's: alpha
# and lambda are those of their CIFAR-100 config (yzd-v/cls_KD 1e5d48f: alpha 0.0012, lambda
# 0.15; their ImageNet settings, alpha 7e-5, are for 7x7 maps of 512-2048 channels). The
# squared error is summed over channels and positions, so alpha may need tuning per pair. CE 1,
# RepDistiller's recipe. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments
# go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet110:resnet20 \
            resnet110:resnet32 resnet32x4:resnet8x4 vgg13:vgg8; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill mgd --mgd_alpha 0.0012 --mgd_lambda 0.15 -r 1 -a 0 \
        -b 1 --trial 1 "$@"
done
