#!/usr/bin/env bash
# SDD (Wei et al., CVPR 2024) as the authors' scripts run it (shicaiwei123/SDD-CVPR2024
# e412036, teacher_*.sh: train_origin.py --cfg configs/cifar100/sdd_{kd,dkd,nkd}/... --M ...):
# SD-KD (CE 0.1, KD 0.9, T 4, no warm-up), SD-DKD (CE 1, DKD's alpha 1 and per-pair beta, T 4,
# warm-up 20) and SD-NKD (CE 1, T 4, gamma 8, warm-up 20) on the six pairs of the paper's
# CIFAR-100 figure and the two same-architecture pairs of the scripts, with the scripts' M
# ([1,2] for resnet32x4 -> resnet8x4, vgg13 -> vgg8 and SD-NKD's ResNet50 -> vgg8). The
# mdistiller recipe (lr 0.05, 0.01 for MobileNetV2/ShuffleNets). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

run() {  # teacher:student, then train_student.py's flags
    local pair=$1; shift
    $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
        --model_s "${pair##*:}" "$@"
}

for pair in resnet32x4:ShuffleV1 wrn_40_2:ShuffleV1 ResNet50:MobileNetV2 vgg13:MobileNetV2 \
            resnet32x4:ShuffleV2 ResNet50:vgg8 resnet32x4:resnet8x4 vgg13:vgg8; do
    case $pair in
        resnet32x4:resnet8x4|vgg13:vgg8) M='[1,2]'; M_NKD='[1,2]' ;;
        ResNet50:vgg8) M='[1,2,4]'; M_NKD='[1,2]' ;;
        *) M='[1,2,4]'; M_NKD='[1,2,4]' ;;
    esac
    run "$pair" --distill sdd_kd --sdd_m "$M" -r 0.1 -a 0 -b 0.9 --kd_T 4 --trial 1 "$@"
    run "$pair" --distill sdd_dkd --sdd_m "$M" -r 1 -a 0 -b 1 --sdd_dkd_T 4 --sdd_warmup 20 \
        --trial 1 "$@"
    run "$pair" --distill sdd_nkd --sdd_m "$M_NKD" -r 1 -a 0 -b 1 --sdd_nkd_T 4 \
        --sdd_warmup 20 --trial 1 "$@"
done
