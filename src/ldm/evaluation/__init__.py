"""Evaluation: probes, metrics, uncertainty."""
