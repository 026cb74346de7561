"""Distillation losses under RepDistiller's class names, and the method registry.

Importing a method's module registers its ``--distill`` name(s).
"""
from .base import (METHODS, PRESETS, Distiller, DistillKL, MethodConfig, NetOutput, Needs,
                   get_method, register_method, register_preset)
from .sources import FrozenTeacher, TeacherSource, TrainedPeer
from .AB import ABLoss
from .ABKD import ABKL, ABLSD, ABTTM, LS, ab_dkd_loss
from .AT import Attention
from .CATKD import CAT_loss, CATKD
from .CC import Correlation
from .CRD import CRD
from .CRLD import CRLD_SETTINGS, crld_losses
from . import CTKD  # noqa: F401 (registers the ctkd preset)
from .DIST import DIST
from .DKD import dkd_loss
from .DML import DML
from .FitNet import HintLoss
from .GDKD import GDKD_SETTINGS, gdkd3_loss, gdkd_loss
from .ICD import DCDLoss, ICDLoss
from .MGD import MGD, MGDLoss
from .MLKD import AlignLoss, CorrLoss, MLPHead, SupConLoss
from .FCFD import FCFD
from .FSP import FSP
from .FT import FactorTransfer
from .KD import KD
from .KDSVD import KDSVD
from .IKL import GKL_SETTINGS, IKL_SETTINGS, ClassPrior, dkl_loss, gkl_loss
from .LSKD import logit_standardize, normalize
from .LumiNet import LUMINET_SETTINGS, luminet_loss, perception
from .MLLD import MLLD, bc_loss, cc_loss, mlld_loss
from .OFA import OFA, SepConv, ofa_loss
from .OFD import OFD, ConnectorConvBN, feat_loss, get_margin_from_BN
from .NKD import NKD, NKDLoss, nkd_loss
from .NST import NSTLoss
from .PKT import PKT
from .ReviewKD import ABF, hcl_loss
from .RKD import RKDLoss
from .RLD import RLD, rld_loss
from .RRD import RRDLoss
from .SDD import SPP, multi_dkd, multi_nkd_loss, sdd_kd_loss, sdd_logits
from .SemCKD import SelfA, SemCKDLoss
from .SimKD import SimKD
from .SKD import SKD_loss, SKDDirectionLoss, SKDInstanceLoss, skd_losses
from .SP import Similarity
from .temperature import (CosineDecay, Global_T, GradientReversal, GradientReversalFunction,
                          LearnedTemperature, LinearDecay)
from .SRD import DISTV2, statm_loss, transfer_conv
from .SRRL import SRRL
from .TTM import TTM, WTTM
from .TeKAP import TeKAPCRDLoss, TeKAPDistillKL
from .VID import VIDLoss
from .WKD import (WKD_SETTINGS, adaptive_avg_std_pool2d, cka_cost_matrix, fc_cost_matrix,
                  linear_CKA_precenter, sinkhorn, wkd_feature_loss, wkd_logit_loss,
                  wkd_logit_loss_with_separation, wkd_logit_loss_with_speration)

__all__ = ['METHODS', 'PRESETS', 'register_preset', 'Distiller', 'Needs', 'MethodConfig',
           'NetOutput', 'TeacherSource', 'FrozenTeacher', 'TrainedPeer', 'get_method',
           'register_method', 'DistillKL', 'HintLoss', 'Attention', 'Similarity', 'Correlation',
           'VIDLoss', 'RKDLoss', 'PKT', 'ABLoss', 'FactorTransfer', 'FSP', 'NSTLoss', 'KDSVD', 'KD',
           'CRD', 'SimKD', 'SRRL', 'transfer_conv', 'statm_loss', 'DISTV2', 'DIST', 'dkd_loss',
           'hcl_loss', 'ABF', 'SemCKDLoss', 'SelfA', 'DML', 'DCDLoss', 'ICDLoss', 'RRDLoss',
           'CorrLoss', 'SupConLoss', 'AlignLoss', 'MLPHead', 'normalize', 'logit_standardize',
           'Global_T', 'GradientReversal', 'GradientReversalFunction', 'CosineDecay',
           'LinearDecay', 'LearnedTemperature', 'MLLD', 'cc_loss', 'bc_loss', 'mlld_loss', 'OFD',
           'ConnectorConvBN', 'feat_loss', 'get_margin_from_BN',
           # the methods of the 2024-26 tables
           'TTM', 'WTTM', 'NKD', 'NKDLoss', 'nkd_loss', 'RLD', 'rld_loss', 'SPP', 'sdd_logits',
           'sdd_kd_loss', 'multi_dkd', 'multi_nkd_loss', 'CAT_loss', 'CATKD', 'MGD', 'MGDLoss',
           'FCFD', 'OFA', 'ofa_loss', 'SepConv',
           # the methods of the 2025-26 papers
           'ABKL', 'LS', 'ABLSD', 'ab_dkd_loss', 'ABTTM', 'dkl_loss', 'gkl_loss', 'ClassPrior',
           'IKL_SETTINGS', 'GKL_SETTINGS', 'perception', 'luminet_loss', 'LUMINET_SETTINGS',
           'gdkd_loss', 'gdkd3_loss', 'GDKD_SETTINGS', 'TeKAPDistillKL', 'TeKAPCRDLoss', 'SKDInstanceLoss',
           'SKDDirectionLoss', 'SKD_loss', 'skd_losses', 'crld_losses', 'CRLD_SETTINGS',
           'sinkhorn', 'wkd_logit_loss', 'wkd_logit_loss_with_speration',
           'wkd_logit_loss_with_separation', 'adaptive_avg_std_pool2d', 'wkd_feature_loss',
           'linear_CKA_precenter', 'cka_cost_matrix', 'fc_cost_matrix', 'WKD_SETTINGS']
