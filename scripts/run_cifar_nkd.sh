#!/usr/bin/env bash
# NKD (Yang et al., ICCV 2023) on RepDistiller's CIFAR-100 pairs with the temperature and gamma
# of the authors' CIFAR-100 config (yzd-v/cls_KD 1e5d48f, configs/distillers/cifar100: T 3,
# gamma 3.5; their class defaults, T 1 and gamma 1.5, are their ImageNet settings): CE 1 plus
# NKD's term. The authors ran no RepDistiller pair; the SDD paper's NKD baselines (the six
# cross-architecture pairs) are the published figures for them. Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet32x4:ShuffleV1 wrn_40_2:ShuffleV1 ResNet50:MobileNetV2 vgg13:MobileNetV2 \
            resnet32x4:ShuffleV2 ResNet50:vgg8 resnet32x4:resnet8x4 vgg13:vgg8; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill nkd --nkd_T 3 --nkd_gamma 3.5 -r 1 -a 0 -b 1 \
        --trial 1 "$@"
done
