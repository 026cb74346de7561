#!/usr/bin/env bash
# GDKD and GDKD3 (Zheng et al., 2025; ZaberKo/GDKD dc5201d) on the 11 pairs of the authors'
# CIFAR-100 configs (configs/cifar100/gdkd/*.yaml, gdkd3/*.yaml): CE 1 plus the term, whose w1
# and w2 per pair --distill gdkd|gdkd3 takes from distiller_zoo/per_pair/gdkd.toml (w0 1, k 5,
# T 4, warm-up 20). Teachers: RepDistiller's, save/models/<T>_vanilla/ckpt_epoch_240.pth; the
# authors load teachers trained with AutoAugment and Cutout (their configs/cifar100/teacher_aug),
# which are not published: train such teachers to follow them exactly. Extra arguments go to
# every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for method in gdkd gdkd3; do
    for pair in resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 wrn_40_2:wrn_16_2 \
                wrn_40_2:wrn_40_1 vgg13:vgg8 resnet32x4:ShuffleV1 resnet32x4:ShuffleV2 \
                wrn_40_2:ShuffleV1 vgg13:MobileNetV2 ResNet50:MobileNetV2; do
        $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
            --model_s "${pair##*:}" --distill "$method" -r 1 -a 0 -b 1 --trial 1 "$@"
    done
done
