"""Per-frame MLP encoder ("inference network") of the predictive models (paper App. B; predictive.md §4.1).

x_t (P pixels) → Linear → ReLU → … (``hidden_layers`` × ``hidden_dim``) → Linear → z_t ∈ R^d, applied to
every frame of a [B, T, P] tensor. The wobbly experiment's paper setting is 10 hidden layers of 200 units
(:data:`ENCODER_PRESETS` ``"paper"``); the released code builds one hidden layer of 200 units whatever the
config says (``"released_code"``, predictive.md §8 item 1).

Initialisation (``init``): ``torch`` = PyTorch's default ``nn.Linear`` init (weights U(±1/√fan_in), i.e. variance
1/(3·fan_in)): each ReLU layer keeps about 1/6 of the signal's second moment, so the 10 × 200 encoder's output
at init is ~10⁻⁵ of the 1-layer one's and its gradients vanish (the collapse measured in issue 11). ``he`` =
He/Kaiming normal init for the activation (weights N(0, 2/fan_in) before a ReLU, N(0, 1/fan_in) for the
linear output layer; biases 0): the second moment is preserved through every layer, so any depth starts
with the 1-layer encoder's output scale. The ``paper`` preset uses ``he``; ``released_code`` keeps ``torch``
(what the official code runs).
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

#: Named (hidden_layers, hidden_dim, init) settings.
ENCODER_PRESETS: dict[str, tuple[int, int, str]] = {
    "paper": (10, 200, "he"),  # paper App. B / official config key encoder_hidden_layers = 10
    "released_code": (1, 200, "torch"),  # what the official code actually builds (the config key is never passed)
    "kalman": (1, 100, "torch"),  # the Kalman experiment's encoder (Sec. 6.1)
}

#: ``init`` values (module docstring).
INITS = ("torch", "he")


class MLPEncoder(nn.Module):
    """MLP input_dim → [hidden_dim]×hidden_layers (ReLU) → output_dim; hidden_layers = 0 is a linear map."""

    def __init__(self, input_dim: int = 100, output_dim: int = 2, hidden_layers: int = 10,
                 hidden_dim: int = 200, init: str = "torch") -> None:
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
        if init not in INITS:
            raise ValueError(f"MLPEncoder: init must be one of {list(INITS)}, got {init!r}")
        if init == "he":
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            for i, m in enumerate(linears):
                last = i == len(linears) - 1
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear" if last else "relu")
                nn.init.zeros_(m.bias)
        self.init = init
        self.input_dim, self.output_dim = input_dim, output_dim
        self.hidden_layers, self.hidden_dim = hidden_layers, hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def build_encoder(cfg: Mapping[str, object], input_dim: int, output_dim: int) -> MLPEncoder:
    """Encoder from ``{preset: paper|released_code|kalman}`` or explicit ``{hidden_layers, hidden_dim, init}``
    (explicit keys override the preset)."""
    preset = str(cfg.get("preset") or "paper")
    if preset not in ENCODER_PRESETS:
        raise ValueError(f"encoder.preset must be one of {sorted(ENCODER_PRESETS)}, got {preset!r}")
    layers, width, init = ENCODER_PRESETS[preset]
    if cfg.get("hidden_layers") is not None:
        layers = int(cfg["hidden_layers"])
    if cfg.get("hidden_dim") is not None:
        width = int(cfg["hidden_dim"])
    if cfg.get("init") is not None:
        init = str(cfg["init"])
    return MLPEncoder(input_dim, output_dim, layers, width, init)
