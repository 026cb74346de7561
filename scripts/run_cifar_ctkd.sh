#!/usr/bin/env bash
# CTKD (Li et al., AAAI 2023) as its authors' scripts/run_cifar_distill.sh runs it: KD with the
# learned temperature on the pairs of their README (batch 64, lr 0.05, lambda from 0 to -1 over
# 10 epochs on a cosine curriculum), then their commented lines, where the learned temperature
# (--ctkd) joins other methods' -a term (and DKD's, without its warm-up). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment
CURRICULUM=(--ctkd_decay cosine --ctkd_lambda_max 0 --ctkd_lambda_min -1 --ctkd_lambda_epochs 10)

for pair in "resnet56 resnet20" "resnet110 resnet32" "resnet110 resnet20" "wrn_40_2 wrn_16_2" \
            "wrn_40_2 wrn_40_1" "vgg13 vgg8"; do
    read -r T S <<< "$pair"
    $PY train_student.py --path_t "./save/models/${T}_vanilla/ckpt_epoch_240.pth" \
        --distill ctkd --model_s "$S" -r 0.1 -a 0.9 -b 0 --kd_T 4 "${CURRICULUM[@]}" --trial 1 "$@"
done

R56=./save/models/resnet56_vanilla/ckpt_epoch_240.pth
for method in "pkt -b 30000" "sp -b 3000" "vid -b 1" "crd -b 0.8" "srrl -b 1"; do
    read -r name weight <<< "$method"
    $PY train_student.py --path_t "$R56" --distill "$name" --model_s resnet20 -r 0.1 -a 0.9 \
        $weight --ctkd "${CURRICULUM[@]}" --trial 1 "$@"
done
$PY train_student.py --path_t "$R56" --distill dkd --model_s resnet20 -r 1 -a 0 -b 1 \
    --dkd_alpha 1 --dkd_beta 2 --dkd_warmup 0 --ctkd "${CURRICULUM[@]}" --trial 1 "$@"
