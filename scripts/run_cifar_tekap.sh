#!/usr/bin/env bash
# TeKAP-L (Hossain et al., ICLR 2025; mdimtiazh/TeKAP 279d380): the README's logit-level command,
# KD with three noisy copies of the teacher as its -a term (--distill kd -r 0.1 -a 0.9 -b 0
# there, whose loop always takes TeKAP's DistillKL), on RepDistiller's resnet32x4 -> resnet8x4
# and vgg13 -> vgg8; TeKAP-F (the README's --distill crd -a 0 -b 0.8: CRD with a noisy teacher
# feature, --distill tekap_crd) and TeKAP F+L (--distill crd -a 1 -b 0.8: tekap_crd -a 1, whose
# -a term is TeKAP-L). Teachers: save/models/<T>_vanilla/ckpt_epoch_240.pth. Extra arguments go
# to every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment

for pair in resnet32x4:resnet8x4 vgg13:vgg8; do
    teacher="./save/models/${pair%%:*}_vanilla/ckpt_epoch_240.pth"
    $PY train_student.py --path_t "$teacher" --model_s "${pair##*:}" --distill tekap \
        -r 0.1 -a 0.9 -b 0 --kd_T 4 --trial 1 "$@"
    for a in 0 1; do
        $PY train_student.py --path_t "$teacher" --model_s "${pair##*:}" --distill tekap_crd \
            -r 1 -a "$a" -b 0.8 --kd_T 4 --trial 1 "$@"
    done
done
