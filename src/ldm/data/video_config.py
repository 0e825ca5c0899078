"""Parameters of a synthetic dot-motion video data set (the authors' code; names follow the official
configs). Dependency-free, so the pipeline can resolve settings without importing numpy or torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ldm.data.motions import MOTIONS, motion_params  # the trajectory registry (ldm.data.motions)
NOISE_TYPES = ("gaussian", "random_gaussian", "state_dependent_gaussian")


@dataclass(frozen=True)
class VideoConfig:
    """Parameters of one synthetic video data set (names follow the official configs)."""

    motion: str = "figure8"  # a name registered in ldm.data.motions.MOTIONS
    motion_params: Mapping[str, float] = field(default_factory=dict)  # the motion's shape parameters
    random_phase: bool = False  # every sequence starts at its own random phase (official: all identical)
    seq_len: int = 100
    image_dim: int = 10
    dt: float = 0.1
    period: float = 1.0  # "period_duration"
    noise_type: str = "gaussian"
    observation_noise: float = 0.01  # pixel-noise variance
    prediction_noise: float = 0.0  # trajectory (process) noise variance, circular only
    jump_rate: float = 0.0  # per-step probability of a +135 degree jump, circular only
    jump_angle_deg: float = 135.0
    half_flip: bool = False
    n_train: int = 800
    n_test: int = 8

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"videos: unknown motion {self.motion!r}; registered: {sorted(MOTIONS)}")
        motion_params(self)  # unknown motion_params keys raise here
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"videos: unknown noise_type {self.noise_type!r}; expected one of {NOISE_TYPES}")
        for name in ("seq_len", "image_dim", "n_train", "n_test"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"videos: {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("observation_noise", "prediction_noise", "dt", "period"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"videos: {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.jump_rate) <= 1.0:
            raise ValueError(f"videos: jump_rate must be in [0, 1], got {self.jump_rate!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VideoConfig":
        """Build from a config mapping; unknown keys raise a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"videos: unknown config key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["motion_params"] = motion_params(self)
        return out
