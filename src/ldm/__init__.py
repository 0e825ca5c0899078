"""Latent Distribution Matching (LDM): library and pipeline for the paper's experiments."""

__version__ = "0.1.0"
