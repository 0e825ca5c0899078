"""Defaults of the Kalman predictive-SSL model, its losses and its training runs (the authors' code).

The one source of these defaults: configs override any of them (``kalman.defaults``,
``kalman.runs.<run>``). Torch-free, so the pipeline can resolve a job's settings without importing torch.
"""

from __future__ import annotations

from typing import Any

LOSSES = ("knn", "stopgrad", "infonce")

#: Model and optimisation defaults (the authors' code); configs override any of them.
DEFAULTS: dict[str, Any] = {
    "model": {
        "input_dim": 100,
        "hidden_dim": 100,
        "state_dim": 2,
        "latent_dim": 2,
        "obs_noise": "fixed",  # fixed | inferred | input | state
        "process_noise": "fixed",  # fixed | error | observation+prediction
        "pred_steps": 4,
        "rho_max": 1.02,
        "rho_soft_start": 0.95,  # null: hard rescale W * rho_max / rho(W) (sticks at the boundary)
        "init_log_scale": 1.0,
        "encoding_norm": "auto",  # whiten | batch | none | auto (= whiten for the stopgrad loss), over batch x time (issue 13)
    },
    "loss": "stopgrad",
    "knn": {"k": 3, "p": 2.0, "clip_quantile": 0.9, "scale_by_dim": True, "jitter": 1e-6},
    "infonce": {"temperature": 1.0, "similarity": "dot"},
    "optim": {
        "batch_size": 8,
        "lr": 0.005,
        "weight_decay": 1e-4,
        "epochs": 20,
        "scheduler": "step",  # step | linear | none
        "min_lr_factor": 0.25,  # linear schedule: final factor
        "lr_scale_batch": 256,
        "multipliers": {"encoder": 1.0, "kalman": 100.0, "process_net": 10.0,
                        "obs_net_inferred": 0.03, "obs_net_state": 1.0,
                        "obs_net_input": 1.0},
        "probe_lr": 0.5,
        "noise_probe_lr": 0.5,
        "max_steps": None,  # stop early (smoke profile)
    },
    "fresh_noise": True,  # redraw pixel noise every epoch (the official training loader does)
    "grad_cos_every": 50,  # Fig. 4D: gradient cosine every N steps
    "eval_train_subset": 64,  # per-epoch held-out R^2 proxy: OLS on this many training sequences
    "eval_batch": 256,
    "paper_probe_video": 2,  # the notebook's single test video
}
