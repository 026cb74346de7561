#!/usr/bin/env bash
# MLKD on the CIFAR-100 pairs of its authors' run_cifar_mlkd.sh, with their weights
# (-r 1 -a 50 -b 1 -d 20; for MLKD -d weighs the alignment loss). Teachers are read from
# save/models/<T>_vanilla/: the MLKD scripts' <T>.pth ('state_dict' inside) when present, else
# ckpt_epoch_240.pth (bash scripts/fetch_pretrained_teachers.sh). Extra arguments go to every
# run, e.g. --trial 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

teacher() {
    local mlkd_layout="./save/models/$1_vanilla/$1.pth"
    if [ -f "$mlkd_layout" ]; then echo "$mlkd_layout"; else echo "./save/models/$1_vanilla/ckpt_epoch_240.pth"; fi
}

for pair in "resnet32x4 ShuffleV2" "vgg13 vgg8" "wrn_40_2 wrn_40_1" "wrn_40_2 wrn_16_2" \
            "wrn_40_2 ShuffleV1" "resnet32x4 resnet8x4" "resnet32x4 ShuffleV1" \
            "resnet56 resnet20" "ResNet50 MobileNetV2" "ResNet50 vgg8" "vgg13 MobileNetV2"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "$(teacher "$T")" --distill mlkd --model_s "$S" -r 1 -a 50 -b 1 -d 20 --trial 1 "$@"
done
