"""Experiment ``categorical``: categorical latents with a probabilistic encoder on MNIST (App. A.8,
Fig. A8/A9). Glue only: ``stages`` (the pipeline jobs) and ``figures`` (the plots); training and
evaluation live in :mod:`ldm.training.categorical`."""
