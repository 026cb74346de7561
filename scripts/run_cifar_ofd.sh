#!/usr/bin/env bash
# OFD (Heo et al., ICCV 2019) with mdistiller's CIFAR-100 recipe (configs/cifar100/ofd.yaml:
# CE 1, feature loss 0.001, 1x1 connectors; lr 0.05, 240 epochs) on the RepDistiller pairs.
# The teacher's BN runs on batch statistics, as in both authors' code (--ofd_teacher_bn eval
# keeps it in eval mode). Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments
# go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "resnet56 resnet20" "resnet110 resnet32" "resnet32x4 resnet8x4" \
            "wrn_40_2 wrn_16_2" "wrn_40_2 wrn_40_1" "vgg13 vgg8"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "./save/models/${T}_vanilla/ckpt_epoch_240.pth" \
        --distill ofd --model_s "$S" -r 1 -a 0 -b 0.001 --trial 1 "$@"
done
