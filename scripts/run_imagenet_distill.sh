#!/usr/bin/env bash
# ImageNet distillation on 8 GPUs with torchrun: ResNet34 -> ResNet18 and ResNet50 ->
# MobileNetV1, teachers from torchvision's pretrained weights (downloaded once).
# Data: ./data/imagenet/{train,val}/<class>/*.JPEG. Extra arguments go to every run;
# GPUS=4 uses four GPUs (--batch_size is per GPU, so also scale --learning_rate); add
# `--dali gpu` to decode JPEGs on the GPUs (see README, Several GPUs and ImageNet).
#
# Recipe (the torchvision ImageNet recipe that CRD, AT and ReviewKD report with): 100 epochs,
# batch 256 in total (32 per GPU), SGD lr 0.1 (scale linearly with the total batch), momentum
# 0.9, weight decay 1e-4, lr x0.1 after epochs 30, 60 and 90. Methods with a published ImageNet
# result for these pairs: KD, AT, CRD and CRD+KD (CRD paper, Table 3), with their CIFAR weights.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN="${RUN:-$(bash scripts/setup_env.sh)/bin/torchrun --standalone --nproc_per_node ${GPUS:-8}}"
RECIPE=(--dataset imagenet --epochs 100 --batch_size 32 --learning_rate 0.1 --weight_decay 1e-4
        --lr_decay_epochs 30,60,90 --num_workers 8)

for pair in "resnet34 ResNet18" "resnet50 MobileNetV1"; do
    read -r T S <<< "$pair"
    T="torchvision:$T"
    # KD
    $RUN train_student.py --path_t "$T" --model_s "$S" --distill kd -r 0.1 -a 0.9 -b 0 "${RECIPE[@]}" "$@"
    # AT
    $RUN train_student.py --path_t "$T" --model_s "$S" --distill attention -a 0 -b 1000 "${RECIPE[@]}" "$@"
    # CRD
    $RUN train_student.py --path_t "$T" --model_s "$S" --distill crd -a 0 -b 0.8 "${RECIPE[@]}" "$@"
    # CRD+KD
    $RUN train_student.py --path_t "$T" --model_s "$S" --distill crd -a 1 -b 0.8 "${RECIPE[@]}" "$@"
done
