#!/usr/bin/env bash
# ABKD (Wang et al., ICML 2025; ghwang-s/abkd df81318, standard_classification/): the commands
# of the authors' README and scripts, one point of each sweep (train_ab.sh, train_ls.sh,
# train_dkd.sh and train_ttm.sh sweep alpha + beta and alpha in steps of 0.1). Their
# --distill ab|ls|dkd|ttm are abkd|abkd_lsd|abkd_dkd|abkd_ttm here; --ab_alpha and --ab_beta
# are accepted as they spell them. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra
# arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment
teacher() { echo "./save/models/$1_vanilla/ckpt_epoch_240.pth"; }

# README: resnet56 -> resnet20, alpha 0.8, beta 0.3
$PY train_student.py --path_t "$(teacher resnet56)" --model_s resnet20 --distill abkd \
    --ab_alpha 0.8 --ab_beta 0.3 -r 1 -a 0 -b 32 --trial 1 "$@"
# train_ls.sh (README: alpha 0.9, beta 0.3), its example pair resnet32x4 -> resnet8x4
$PY train_student.py --path_t "$(teacher resnet32x4)" --model_s resnet8x4 --distill abkd_lsd \
    --ab_alpha 0.9 --ab_beta 0.3 -r 0.1 -a 0 -b 9 --kd_T 2 --trial 1 "$@"
# train_dkd.sh's example: vgg13 -> vgg8, --dkd_beta 6, alpha + beta 1.0 (alpha 0.5 to 1.2)
$PY train_student.py --path_t "$(teacher vgg13)" --model_s vgg8 --distill abkd_dkd \
    --ab_alpha 0.7 --ab_beta 0.3 -r 1 -a 0 -b 1 --dkd_beta 6 --trial 1 "$@"
# train_ttm.sh's example: wrn_40_2 -> wrn_40_1, -b 76, --ttm_l 0.1, alpha + beta 1.1
$PY train_student.py --path_t "$(teacher wrn_40_2)" --model_s wrn_40_1 --distill abkd_ttm \
    --ab_alpha 0.8 --ab_beta 0.3 -r 1 -a 0 -b 76 --ttm_l 0.1 --trial 1 "$@"
