"""Per-frame MLP encoder ("inference network") of the predictive models (paper App. B; predictive.md §4.1).

x_t (P pixels) → Linear → ReLU → … (``hidden_layers`` × ``hidden_dim``) → Linear → z_t ∈ R^d, applied to
every frame of a [B, T, P] tensor. The wobbly experiment's paper setting is 10 hidden layers of 200 units
(:data:`ENCODER_PRESETS` ``"paper"``); the released code builds one hidden layer of 200 units whatever the
config says (``"released_code"``, predictive.md §8 item 1).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

#: Named (hidden_layers, hidden_dim) settings.
ENCODER_PRESETS: dict[str, tuple[int, int]] = {
    "paper": (10, 200),  # paper App. B / official config key encoder_hidden_layers = 10
    "released_code": (1, 200),  # what the official code actually builds (the config key is never passed)
    "kalman": (1, 100),  # the Kalman experiment's encoder (Sec. 6.1)
}


class MLPEncoder(nn.Module):
    """MLP input_dim → [hidden_dim]×hidden_layers (ReLU) → output_dim; hidden_layers = 0 is a linear map."""

    def __init__(self, input_dim: int = 100, output_dim: int = 2, hidden_layers: int = 10,
                 hidden_dim: int = 200) -> None:
        super().__init__()
        if hidden_layers < 0 or hidden_dim < 1 or input_dim < 1 or output_dim < 1:
            raise ValueError(f"MLPEncoder: bad sizes input_dim={input_dim}, output_dim={output_dim}, "
                             f"hidden_layers={hidden_layers}, hidden_dim={hidden_dim}")
        layers: list[nn.Module] = []
        d = input_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(d, hidden_dim), nn.ReLU()]
            d = hidden_dim
        layers.append(nn.Linear(d, output_dim))
        self.net = nn.Sequential(*layers)
        self.input_dim, self.output_dim = input_dim, output_dim
        self.hidden_layers, self.hidden_dim = hidden_layers, hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_encoder(cfg: Mapping[str, object], input_dim: int, output_dim: int) -> MLPEncoder:
    """Encoder from ``{preset: paper|released_code|kalman}`` or explicit ``{hidden_layers, hidden_dim}``
    (explicit keys override the preset)."""
    preset = str(cfg.get("preset") or "paper")
    if preset not in ENCODER_PRESETS:
        raise ValueError(f"encoder.preset must be one of {sorted(ENCODER_PRESETS)}, got {preset!r}")
    layers, width = ENCODER_PRESETS[preset]
    if cfg.get("hidden_layers") is not None:
        layers = int(cfg["hidden_layers"])
    if cfg.get("hidden_dim") is not None:
        width = int(cfg["hidden_dim"])
    return MLPEncoder(input_dim, output_dim, layers, width)
