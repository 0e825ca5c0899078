"""Experiment `ica` (paper Fig. 2)."""
