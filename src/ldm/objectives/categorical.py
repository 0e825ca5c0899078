"""Annealing of the categorical latent model's P(c2 = c1) = p (App. A.8, images.md §2).

Official ``catprob`` schedule: the temperature starts at T(p_start) and after every epoch moves a
fraction ``rate / E`` of the remaining way to T(p_end) (E = number of epochs, rate = 4):

    T_0 = T(p_start),   T_{e+1} = T_e − (rate/E)(T_e − T_end)
    ⇔  T_e = T_end + (T_start − T_end)(1 − rate/E)^e,

an exponential approach (after E = 30 epochs 1.4 % of the gap is left, p ≈ 0.991 for target 0.992).
T ↔ p via :func:`ldm.latent_models.categorical_temperature`. ``p_end = None`` keeps p constant.
With E < rate the official update would overshoot T_end; the factor is clamped at 0 (T_end from epoch 1).

The paper's clock is the epoch of 60 000 pairs. ``pace`` = schedule epochs per training epoch
(pairs per training epoch / pairs per schedule epoch) runs the same schedule on a clock of pairs seen:

    T_e = T_end + (T_start − T_end)(1 − rate/E)^(pace·e),

so a training epoch of 8192 pairs moves T as far as 8192/60000 of a paper epoch (pace = 1 is the official
per-epoch schedule, and for the paper's 60 000-pair epochs the two are the same).
"""

from __future__ import annotations

from dataclasses import dataclass

from ldm.objectives.latent_models import CategoricalModel, categorical_same_probability, categorical_temperature

__all__ = ["CategoricalAnnealing"]


@dataclass(frozen=True)
class CategoricalAnnealing:
    """Per-epoch schedule of the categorical model's temperature (and p)."""

    p_start: float = 0.8
    p_end: float | None = 0.992
    epochs: int = 30
    n: int = 10
    rate: float = 4.0
    pace: float = 1.0  # schedule epochs per training epoch (pairs per epoch / pairs per schedule epoch)

    def __post_init__(self) -> None:
        if int(self.epochs) < 1:
            raise ValueError(f"annealing epochs must be >= 1, got {self.epochs!r}")
        if not self.rate >= 0:
            raise ValueError(f"annealing rate must be >= 0, got {self.rate!r}")
        if not self.pace > 0:
            raise ValueError(f"annealing pace must be > 0, got {self.pace!r}")
        categorical_temperature(self.p_start, self.n)  # raises naming p if out of (1/n, 1)
        if self.p_end is not None:
            categorical_temperature(self.p_end, self.n)

    @property
    def t_start(self) -> float:
        return categorical_temperature(self.p_start, self.n)

    @property
    def t_end(self) -> float:
        return self.t_start if self.p_end is None else categorical_temperature(self.p_end, self.n)

    def temperature(self, epoch: int) -> float:
        """T used during epoch ``epoch`` (counted from 0)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        factor = max(0.0, 1.0 - self.rate / self.epochs)
        return self.t_end + (self.t_start - self.t_end) * factor ** (int(epoch) * self.pace)

    def p(self, epoch: int) -> float:
        """P(c2 = c1) used during epoch ``epoch``."""
        return categorical_same_probability(self.temperature(epoch), self.n)

    def apply(self, model: CategoricalModel, epoch: int) -> float:
        """Set ``model``'s temperature for ``epoch``; return it."""
        if model.n != self.n:
            raise ValueError(f"annealing schedule has n={self.n}, latent model has n={model.n}")
        t = self.temperature(epoch)
        model.set_temperature(t)
        return t
