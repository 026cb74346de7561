#!/usr/bin/env bash
# TTM and WTTM (Zheng & Yang, ICLR 2024) on RepDistiller's CIFAR-100 pairs, with the authors'
# README commands (zkxufo/TTM fe457b3): TTM --ttm_l 0.1 -r 1 -b 45 -a 0; CRD+WTTM --distill crd
# --add wttm --ttm_l 0.2 -b 0.8 -a 4. The per-pair gamma and beta of the paper's appendix A.4 are
# not in the repository; these commands give every pair the README's values, and WTTM alone the
# weight and power the README gives it beside CRD. RepDistiller's recipe (lr 0.05, 0.01 for
# MobileNetV2/ShuffleNets). Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra
# arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

SAME="wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet110:resnet20 resnet110:resnet32
      resnet32x4:resnet8x4 vgg13:vgg8"
CROSS="vgg13:MobileNetV2 ResNet50:MobileNetV2 ResNet50:vgg8 resnet32x4:ShuffleV1
       resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1"

run() {  # teacher:student, then train_student.py's flags
    local pair=$1; shift
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" "$@"
}

for pair in $SAME $CROSS; do
    run "$pair" --distill ttm --ttm_l 0.1 -r 1 -b 45 -a 0 --trial 1 "$@"
    run "$pair" --distill wttm --ttm_l 0.2 -r 1 -b 4 -a 0 --trial 1 "$@"
done
for pair in $SAME; do
    run "$pair" --distill crd --add wttm --ttm_l 0.2 -r 1 -b 0.8 -a 4 --trial 1 "$@"
done
