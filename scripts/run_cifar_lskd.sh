#!/usr/bin/env bash
# Logit standardisation (LSKD, Sun et al., CVPR 2024) on the CIFAR-100 pairs of its authors'
# README, with each of the four methods they standardise: KD, DKD, MLLD and CTKD. Their
# tools/train.py runs are "--cfg <method>/<pair>.yaml --logit-stand --base-temp T --kd-weight W";
# here --logit_stand alone takes the temperature and weight (and DKD's beta) of their log for
# the pair, printed at start. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth
# (bash scripts/fetch_pretrained_teachers.sh). Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "resnet32x4 resnet8x4" "vgg13 vgg8" "wrn_40_2 wrn_40_1" "wrn_40_2 wrn_16_2" \
            "resnet56 resnet20" "resnet110 resnet32" "resnet110 resnet20" \
            "resnet32x4 ShuffleV2" "resnet32x4 wrn_16_2" "resnet32x4 wrn_40_2" \
            "wrn_40_2 resnet8x4" "wrn_40_2 MobileNetV2" "vgg13 MobileNetV2" \
            "ResNet50 MobileNetV2"; do
    read -r T S <<< "$pair"
    path="./save/models/${T}_vanilla/ckpt_epoch_240.pth"
    $PY train_student.py --path_t "$path" --model_s "$S" --distill kd --logit_stand --trial 1 "$@"
    $PY train_student.py --path_t "$path" --model_s "$S" --distill dkd --logit_stand --trial 1 "$@"
    $PY train_student.py --path_t "$path" --model_s "$S" --distill mlld --logit_stand --trial 1 "$@"
    $PY train_student.py --path_t "$path" --model_s "$S" --distill ctkd --logit_stand --trial 1 "$@"
done
