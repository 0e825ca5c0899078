"""Experiment `kalman` (paper Fig. 4A-D, A3, A4)."""
