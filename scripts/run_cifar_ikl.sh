#!/usr/bin/env bash
# IKL (Cui et al., NeurIPS 2024) and GKL (TPAMI 2026), jiequancui/DKL c5e8ad2, on the 11 pairs
# of the authors' CIFAR-100 configs (DKLv1/KD-dkl/cifar100_kd_dkl_configs/, DKLv2/KD-dkl/
# cifar100_config_gkl/): CE 1 plus the term, whose alpha, beta (and GKL's gamma and GI) per
# pair --distill ikl|gkl takes from distiller_zoo/per_pair/dkl.toml; T 4, warm-up 20, IKL's T2
# 100 with GI off, GKL's T2 4. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra
# arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for method in ikl gkl; do
    for pair in resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 wrn_40_2:wrn_16_2 \
                wrn_40_2:wrn_40_1 vgg13:vgg8 vgg13:MobileNetV2 ResNet50:MobileNetV2 \
                resnet32x4:ShuffleV1 resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1; do
        $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
            --model_s "${pair##*:}" --distill "$method" -r 1 -a 0 -b 1 --trial 1 "$@"
    done
done
