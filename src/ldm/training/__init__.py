"""Training: the resumable loop, checkpoints, optimisers, the device layer."""
