"""Evaluation: expert metrics (image/pixel AUROC, AUPRO) and benchmark scorers."""
