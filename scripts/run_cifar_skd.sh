#!/usr/bin/env bash
# SKD (Jeong, Lee, Choi, CVPR 2026): the authors' objective (HyunJunSik/StreamLined 7458628,
# --distill skd_authors: CE 0.1 and KD 0.9 by default, 0.5 and 0.5 for resnet32x4 -> resnet8x4,
# their recipe's lr 0.1, --recipe skd_cifar) on the six pairs of their README table, and
# torchdistill's losses
# (--distill skd, its sample config's instance + direction terms, no CE) on two of them.
# Their table was trained on a doubled epoch (each image once with crop and flip, once with
# RandAugment too) and their own teachers; here the epoch is the usual one and the teachers
# RepDistiller's: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 wrn_40_2:wrn_16_2 \
            wrn_40_2:wrn_40_1 vgg13:vgg8; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill skd_authors --recipe skd_cifar --trial 1 "$@"
done
for pair in resnet32x4:resnet8x4 vgg13:vgg8; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill skd --trial 1 "$@"
done
