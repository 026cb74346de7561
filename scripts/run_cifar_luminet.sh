#!/usr/bin/env bash
# LumiNet (Hossain et al., TMLR 2025; ismail31416/LumiNet 8cf749b) on the 11 pairs of the
# authors' CIFAR-100 table (tables/luminet.toml runs and reports them): --distill luminet takes
# alpha, T and the CE weight (-r) per pair from distiller_zoo/per_pair/luminet.toml, the
# authors' six configs (configs/cifar100/luminet/*.yaml); the other five pairs have no config
# and run their cfg.py's defaults (alpha 31, T 4, CE 2). Warm-up 20, lr 0.05 (0.01 for
# MobileNetV2 and ShuffleNet students, as the toolbox's default). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 wrn_40_2:wrn_16_2 \
            wrn_40_2:wrn_40_1 vgg13:vgg8 resnet32x4:ShuffleV1 wrn_40_2:ShuffleV1 \
            vgg13:MobileNetV2 ResNet50:MobileNetV2 resnet32x4:ShuffleV2; do
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" --distill luminet --trial 1 "$@"
done
