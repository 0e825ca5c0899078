"""The probabilistic categorical encoder of App. A.8: backbone → MLP head → n category logits.

Official ``catprob`` head (images.md §2): Linear(feat → 128) – ReLU – Linear(128 → n) – softmax.
:class:`CategoricalEncoder` returns the *logits*; the softmax s = softmax(logits) is applied by the
categorical latent model (``CategoricalModel(from_logits=True)``) and by :meth:`probabilities`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .resnet import resnet18
from .small_cnn import SmallCNN

__all__ = ["BACKBONES", "build_backbone", "CategoricalEncoder"]

#: backbone name -> (constructor, {option: default})
BACKBONES: dict[str, tuple[Any, dict[str, Any]]] = {
    "resnet18": (resnet18, {"stem": "imagenet", "width": 1.0, "stem_padding": None}),
    "small_cnn": (SmallCNN, {"widths": [32, 64, 128], "stem_stride": 2}),
}


def build_backbone(config: Mapping[str, Any], in_channels: int = 3) -> nn.Module:
    """Backbone from ``{"name": "resnet18" | "small_cnn", **options}``; unknown names or options raise
    a ``ValueError`` naming them and the allowed values."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone name {name!r}; allowed values: {sorted(BACKBONES)}")
    ctor, defaults = BACKBONES[name]
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for backbone {name!r}; allowed: {sorted(defaults)}")
    return ctor(in_channels=in_channels, **{**defaults, **cfg})


class CategoricalEncoder(nn.Module):
    """x → backbone features → Linear(out_dim, hidden) – ReLU – Linear(hidden, n) = category logits."""

    def __init__(self, backbone: nn.Module, n_categories: int = 10, hidden: int = 128) -> None:
        super().__init__()
        if int(n_categories) < 2:
            raise ValueError(f"n_categories must be >= 2, got {n_categories!r}")
        self.backbone = backbone
        feat = int(getattr(backbone, "out_dim"))
        self.head = nn.Sequential(nn.Linear(feat, int(hidden)), nn.ReLU(inplace=True),
                                  nn.Linear(int(hidden), int(n_categories)))
        self.n_categories = int(n_categories)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def logits(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Category logits (N, n) in eval mode (BatchNorm running statistics), in chunks."""
        was_training = self.training
        self.eval()
        try:
            out = [self(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else x.new_zeros((0, self.n_categories))

    def probabilities(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Softmax category probabilities s (N, n) in eval mode."""
        return torch.softmax(self.logits(x, batch_size), -1)
