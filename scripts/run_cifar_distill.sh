#!/usr/bin/env bash
# RepDistiller's distillation commands, resnet32x4 -> resnet8x4 on CIFAR-100 (240 epochs each),
# then the modern methods (teacher-classifier, logit, review and cross-layer families).
# The teacher: bash scripts/fetch_pretrained_teachers.sh resnet32x4, or train it with
# python train_teacher.py --model resnet32x4 (it is then linked at the path below), or name
# another file with TEACHER=<path>. Extra arguments are passed to every run, e.g. --trial 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(bash scripts/setup_env.sh)/bin/python}"  # the project's environment
T="${TEACHER:-./save/models/resnet32x4_vanilla/ckpt_epoch_240.pth}"

# KD
$PY train_student.py --path_t $T --distill kd --model_s resnet8x4 -r 0.1 -a 0.9 -b 0 --trial 1 "$@"
# FitNet
$PY train_student.py --path_t $T --distill hint --model_s resnet8x4 -a 0 -b 100 --trial 1 "$@"
# AT
$PY train_student.py --path_t $T --distill attention --model_s resnet8x4 -a 0 -b 1000 --trial 1 "$@"
# SP
$PY train_student.py --path_t $T --distill similarity --model_s resnet8x4 -a 0 -b 3000 --trial 1 "$@"
# CC
$PY train_student.py --path_t $T --distill correlation --model_s resnet8x4 -a 0 -b 0.02 --trial 1 "$@"
# VID
$PY train_student.py --path_t $T --distill vid --model_s resnet8x4 -a 0 -b 1 --trial 1 "$@"
# RKD
$PY train_student.py --path_t $T --distill rkd --model_s resnet8x4 -a 0 -b 1 --trial 1 "$@"
# PKT
$PY train_student.py --path_t $T --distill pkt --model_s resnet8x4 -a 0 -b 30000 --trial 1 "$@"
# AB (30 init epochs, then CE training)
$PY train_student.py --path_t $T --distill abound --model_s resnet8x4 -a 0 -b 1 --trial 1 "$@"
# FT (30 init epochs for the paraphraser)
$PY train_student.py --path_t $T --distill factor --model_s resnet8x4 -a 0 -b 200 --trial 1 "$@"
# FSP (30 init epochs, then CE training)
$PY train_student.py --path_t $T --distill fsp --model_s resnet8x4 -a 0 -b 50 --trial 1 "$@"
# NST
$PY train_student.py --path_t $T --distill nst --model_s resnet8x4 -a 0 -b 50 --trial 1 "$@"
# CRD
$PY train_student.py --path_t $T --distill crd --model_s resnet8x4 -a 0 -b 0.8 --trial 1 "$@"
# CRD+KD
$PY train_student.py --path_t $T --distill crd --model_s resnet8x4 -a 1 -b 0.8 --trial 1 "$@"

# Methods that reuse the teacher's classifier (the SimKD toolbox's weights; SRD's seed weights)
# SimKD (-f 2: projector factor; 4 and 8 give smaller projectors)
$PY train_student.py --path_t $T --distill simkd --model_s resnet8x4 -c 0 -d 0 -b 1 -f 2 --trial 1 "$@"
# SRRL
$PY train_student.py --path_t $T --distill srrl --model_s resnet8x4 -c 1 -d 1 -b 1 --trial 1 "$@"
# SRD (1 x feature MSE + 2 x logit MSE; --srd_feat_loss stat for the paper's feature loss)
$PY train_student.py --path_t $T --distill srd --model_s resnet8x4 -r 1 -a 0 -b 1 --trial 1 "$@"
# SRDwithDIST
$PY train_student.py --path_t $T --distill srd_dist --model_s resnet8x4 -r 1 -a 0 -b 1 --trial 1 "$@"

# Logit, review and cross-layer methods (their authors' recipes; per-pair defaults are printed)
# DIST (1 x CE + 2 x DIST, tau 4)
$PY train_student.py --path_t $T --distill dist --model_s resnet8x4 -r 1 -a 0 -b 2 --trial 1 "$@"
# DKD (beta 8 for this pair, 20 warm-up epochs)
$PY train_student.py --path_t $T --distill dkd --model_s resnet8x4 -r 1 -a 0 -b 1 --trial 1 "$@"
# ReviewKD (HCL weight 5 for this pair, 20 warm-up epochs)
$PY train_student.py --path_t $T --distill reviewkd --model_s resnet8x4 -r 1 -a 0 -b 1 --trial 1 "$@"
# SemCKD (the SimKD toolbox's -c 1 -d 1 -b 400)
$PY train_student.py --path_t $T --distill semckd --model_s resnet8x4 -c 1 -d 1 -b 400 --trial 1 "$@"
# DML (the peer starts from the teacher's checkpoint here; --model_t NAME without --path_t
# starts it from scratch)
$PY train_student.py --path_t $T --distill dml --model_s resnet8x4 -r 1 -a 1 -b 1 --trial 1 "$@"

# Contrastive and multi-view methods (their authors' -a 0 -b 1; -a 1 adds KD)
# ICD / DCD
$PY train_student.py --path_t $T --distill icd --model_s resnet8x4 -a 0 -b 1 --trial 1 "$@"
# RRD (queue of --nce_k 16384 teacher embeddings)
$PY train_student.py --path_t $T --distill rrd --model_s resnet8x4 -a 0 -b 1 --trial 1 "$@"
# MLKD (-d: the alignment weight for this method; run_cifar_mlkd.sh holds the authors' pairs)
$PY train_student.py --path_t $T --distill mlkd --model_s resnet8x4 -r 1 -a 50 -b 1 -d 20 --trial 1 "$@"
