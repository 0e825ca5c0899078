"""Plotting functions that render the paper's figures from experiment outputs."""
