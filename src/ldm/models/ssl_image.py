"""Image SSL network of Table 2 / A1: ResNet-18 backbone + the row's projector + the online linear probe
(paper App. B; images.md §1, §3).

Projectors (images.md §1):

* ``mlp`` — Linear(F → hidden) – ReLU – Linear(hidden → out), no normalisation (plane KDE/kNN:
  2048-2048; sphere: 2048-256 on CIFAR, 4096-512 on ImageNet-100; the sphere model L2-normalises in
  the objective);
* ``vicreg`` — Linear–BN–ReLU–Linear–BN–ReLU–Linear (plane LogDet rows = VICReg / VICReg2, 2048-2048-2048).

The online classifier ``Linear(F, n_classes)`` sees detached backbone features: its gradient never
reaches the backbone (the number the paper reports).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from ldm.models.resnet import resnet18

__all__ = ["make_projector", "ImageSSL", "PROJECTORS"]

PROJECTORS = ("mlp", "vicreg")


def make_projector(kind: str, in_dim: int, hidden: int, out: int) -> nn.Module:
    """The projector of a Table A1 row (see module docstring)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))
    if kind == "vicreg":
        return nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )
    raise ValueError(f"projector.kind must be one of {list(PROJECTORS)}, got {kind!r}")


class ImageSSL(nn.Module):
    """backbone → features (B, F); projector → z (B, D); classifier on detached features."""

    def __init__(self, n_classes: int, stem: str = "cifar", width: float = 1.0, projector: str = "mlp",
                 hidden: int = 2048, out: int = 2048) -> None:
        super().__init__()
        self.backbone = resnet18(stem=stem, width=width)
        self.feat_dim = self.backbone.out_dim
        self.projector = make_projector(projector, self.feat_dim, hidden, out)
        self.classifier = nn.Linear(self.feat_dim, n_classes)

    @classmethod
    def from_config(cls, model: Mapping[str, Any], n_classes: int) -> "ImageSSL":
        p = model["projector"]
        return cls(n_classes, stem=model["stem"], width=float(model["width"]), projector=p["kind"],
                   hidden=int(p["hidden"]), out=int(p["out"]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(features, projector output, online-probe logits on the detached features)."""
        h = self.backbone(x)
        return h, self.projector(h), self.classifier(h.detach())
