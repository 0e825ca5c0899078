"""Experiment ``categorical``: categorical latents with a probabilistic encoder on MNIST (App. A.8,
Fig. A8/A9). ``train`` holds the training/evaluation glue, ``figures`` the plots."""
