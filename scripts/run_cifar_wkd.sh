#!/usr/bin/env bash
# WKD (Lv, Yang & Li, NeurIPS 2024; JiamingLv/WKD 214cf88): WKD-L, WKD-F and WKD-L+F on the two
# CIFAR-100 pairs of the authors' configs, resnet32x4 -> resnet8x4 and wrn_40_2 -> ShuffleV1,
# with their per-pair settings (temperature, weights, grid, cosine decay after epoch 150:
# the defaults of --distill wkd_*) and mdistiller's recipe (lr 0.05, 0.01 for ShuffleV1, applied
# unless given). WKD-L's cost matrix is computed once per run from the teacher's last-stage
# maps over the training set and stored in the run folder as wkd_cost_matrix.pt; the authors'
# files (wkd_cost_matrix/cifar100/<teacher>/linear_cka.pth) fit only mdistiller's teachers and
# go in with --wkd_cost_matrix PATH. Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth.
# Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet32x4:resnet8x4 wrn_40_2:ShuffleV1; do
    for method in wkd_l wkd_f wkd_lf; do
        $PY train_student.py --path_t "./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth" \
            --model_s "${pair##*:}" --distill "$method" --trial 1 "$@"
    done
done
