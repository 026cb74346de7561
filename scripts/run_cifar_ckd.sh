#!/usr/bin/env bash
# CKD (coded teacher inputs) with the CKD authors' method list and weights, for their two
# pairs, wrn_40_2 -> wrn_16_2 and resnet32x4 -> resnet8x4 (240 epochs each). The first run of
# each teacher prepares its 20 rounds (cached beside the teacher; or run
# python scripts/prepare_ckd.py --path_t <teacher> first). Teachers:
# bash scripts/fetch_pretrained_teachers.sh wrn_40_2 resnet32x4. Extra arguments go to every
# run (e.g. --trial 2, or --ckd clean for the authors' control).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in "wrn_40_2 wrn_16_2" "resnet32x4 resnet8x4"; do
    read -r T S <<< "$pair"
    P="./save/models/${T}_vanilla/ckpt_epoch_240.pth"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill kd -r 0.1 -a 0.9 -b 0 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill hint -a 0 -b 100 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill attention -a 0 -b 1000 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill similarity -a 0 -b 3000 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill correlation -a 0 -b 0.02 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill vid -a 0 -b 1 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill rkd -a 0 -b 1 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill pkt -a 0 -b 30000 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill abound -a 0 -b 1 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill factor -a 0 -b 200 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill fsp -a 0 -b 50 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill nst -a 0 -b 50 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill kdsvd -a 0 -b 1 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill crd -a 0 -b 0.8 --trial 1 "$@"
    $PY train_student.py --path_t "$P" --ckd ckd --model_s "$S" --distill dist -r 1 -a 0 -b 2 --dist_beta 1 --dist_gamma 1 --dist_tau 4 --trial 1 "$@"
done
