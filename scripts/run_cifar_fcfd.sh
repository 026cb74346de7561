#!/usr/bin/env bash
# FCFD (Liu et al., ICLR 2023) as the authors run it (LiuDongyang6/FCFD 2aefb7b,
# classification/experiments/cifar/*.yaml with train_lr0.05.sh / train_lr0.01.sh): CE 1, the
# student's KL at T (-a 1), the feature terms (weight_l2, warmed up over 20 epochs) and the mixed
# paths' KL (-b 1), 2 mixed paths a step drawn both ways, SGD with Nesterov momentum, lr 0.05
# (0.01 for MobileNetV2/ShuffleNets), batch 64, 240 epochs. T, weight_l2 and the mixed KL's
# weight per pair as their YAML files. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth.
# Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for setting in \
    "resnet32x4:resnet8x4 4 5 1" "vgg13:vgg8 4 5 1" "wrn_40_2:wrn_40_1 4 5 1" \
    "wrn_40_2:wrn_16_2 4 5 0.2" "resnet56:resnet20 4 0.02 1" "vgg13:MobileNetV2 4 5 1" \
    "wrn_40_2:ShuffleV1 4 5 1" "resnet32x4:ShuffleV1 8 5 1" "resnet32x4:ShuffleV2 8 5 1" \
    "ResNet50:MobileNetV2 8 5 1"; do
    read -r pair T weight_l2 mix_weight <<< "$setting"
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill fcfd -r 1 -a 1 -b 1 --kd_T "$T" \
        --fcfd_weight_l2 "$weight_l2" --fcfd_mix_weight "$mix_weight" --fcfd_paths 2 \
        --fcfd_type bi --nesterov --trial 1 "$@"
done
