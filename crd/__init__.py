"""Contrastive representation distillation (CRD): memory bank and NCE loss live here."""
