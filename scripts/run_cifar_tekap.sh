#!/usr/bin/env bash
# TeKAP-L (Hossain et al., ICLR 2025; mdimtiazh/TeKAP 279d380): the README's logit-level command,
# KD with three noisy copies of the teacher as its -a term (--distill kd -r 0.1 -a 0.9 -b 0
# there, whose loop always takes TeKAP's DistillKL), on RepDistiller's resnet32x4 -> resnet8x4
# and vgg13 -> vgg8; and TeKAP-L beside CRD (--distill crd -a 1 -b 0.8 with --add tekap, the
# logit half of the README's TeKAP (F+L), whose feature half is not yet here). Teachers:
# save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet32x4:resnet8x4 vgg13:vgg8; do
    teacher="./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth"
    $PY train_student.py --path_t "$teacher" --model_s "${pair##*:}" --distill tekap \
        -r 0.1 -a 0.9 -b 0 --kd_T 4 --trial 1 "$@"
    $PY train_student.py --path_t "$teacher" --model_s "${pair##*:}" --distill crd \
        --add tekap -r 1 -a 1 -b 0.8 --kd_T 4 --trial 1 "$@"
done
