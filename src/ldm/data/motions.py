"""Registry of 2-D dot trajectories for the Kalman video experiments (paper Sec. 6.1; issue 13).

A motion is a function ``trajectory(cfg, n, rng) -> {"position": [n, T, 2], ...extra labels}`` registered
under a name with :func:`register_motion`, plus its *true rotation angles per step* (the frequencies of
its hidden linear dynamics, derived from the motion's own parameters), so evaluation never guesses them.

Periodic motions are curves ``c(u)`` of one loop parameter ``u`` in [0, 2 pi); frame t shows
``c(2 pi t dt / loop_time + phi)``. ``phi = 0`` for every sequence (the official code: all sequences share
one trajectory) unless ``random_phase`` is set, then ``phi ~ U(0, 2 pi)`` per sequence. Registered:

* ``circular`` -- noisy rotation on the unit circle with optional jumps (the official code; a Markov
  chain, not a curve); ``random_phase`` draws the start angle;
* ``figure8`` -- ``(cos u, sin u cos u)``, loop time 2 ``period`` (the official convention);
* ``square`` -- counter-clockwise square of half-side 1, loop time ``period``;
* ``lissajous`` -- ``(ax cos(a u + delta), ay sin(b u))`` (figure8 = a 1, b 2 up to scale);
* ``ellipse`` -- radii ``rx``, ``ry``, tilted by ``tilt_deg``;
* ``polygon`` -- regular polygon with ``sides`` corners, ``radius``, uniform speed along the edges;
* ``epicycle`` -- ``(cos u + c cos(k u), sin u + c sin(k u))``.

Dependency-free at import (numpy is imported inside the functions), so config validation stays cheap.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

Trajectory = Callable[[Any, int, Any], dict]


@dataclass(frozen=True)
class Motion:
    """A registered motion: trajectory function, default ``motion_params``, the harmonics of its loop
    (rotation angles per step = harmonic x 360 dt / loop_time) and the loop time as a multiple of
    ``period``."""

    name: str
    trajectory: Trajectory
    defaults: Mapping[str, float]
    harmonics: Callable[[Mapping[str, float]], list[float]]
    loop_factor: float = 1.0


MOTIONS: dict[str, Motion] = {}


def register_motion(name: str, defaults: Mapping[str, float] | None = None,
                    harmonics: Callable[[Mapping[str, float]], list[float]] = lambda p: [1.0],
                    loop_factor: float = 1.0) -> Callable[[Trajectory], Trajectory]:
    """Decorator: add ``fn(cfg, n, rng) -> {"position": [n,T,2], ...}`` to :data:`MOTIONS` under ``name``."""

    def deco(fn: Trajectory) -> Trajectory:
        if name in MOTIONS:
            raise ValueError(f"videos: motion {name!r} is already registered")
        MOTIONS[name] = Motion(name, fn, dict(defaults or {}), harmonics, float(loop_factor))
        return fn

    return deco


def get_motion(name: str) -> Motion:
    if name not in MOTIONS:
        raise ValueError(f"videos: unknown motion {name!r}; registered: {sorted(MOTIONS)}")
    return MOTIONS[name]


def motion_params(cfg: Any) -> dict[str, float]:
    """The motion's defaults updated by ``cfg.motion_params``; unknown keys raise an error naming them."""
    m = get_motion(cfg.motion)
    given = dict(getattr(cfg, "motion_params", None) or {})
    unknown = sorted(set(given) - set(m.defaults))
    if unknown:
        raise ValueError(f"videos: unknown motion_params {unknown} for motion {cfg.motion!r}; known: {sorted(m.defaults)}")
    return {**m.defaults, **given}


def rotation_angles_deg(cfg: Any) -> list[float]:
    """True rotation angles per step of the motion's hidden dynamics, fundamental first (degrees, folded
    into [0, 180]): harmonic x 360 dt / loop_time for every harmonic of the loop."""
    m = get_motion(cfg.motion)
    loop = m.loop_factor * float(cfg.period)
    out = []
    for k in m.harmonics(motion_params(cfg)):
        a = (float(k) * 360.0 * float(cfg.dt) / loop) % 360.0
        out.append(360.0 - a if a > 180.0 else a)
    return out


def _phases(cfg: Any, n: int, rng: Any) -> Any:
    import numpy as np

    if getattr(cfg, "random_phase", False):
        return rng.uniform(0.0, 2 * np.pi, size=n)
    return np.zeros(n)


def _loop_param(cfg: Any, n: int, rng: Any) -> Any:
    """u[n, T] = 2 pi t dt / loop_time + phi_n."""
    import numpy as np

    loop = get_motion(cfg.motion).loop_factor * float(cfg.period)
    t = np.arange(int(cfg.seq_len)) * float(cfg.dt)
    return 2 * np.pi * t[None, :] / loop + _phases(cfg, n, rng)[:, None]


# --------------------------------------------------------------------------------------------------
# the official motions
# --------------------------------------------------------------------------------------------------


@register_motion("circular")
def circular(cfg: Any, n: int, rng: Any) -> dict:
    """Noisy rotation on the unit circle: ``p_t = normalise(R(w dt) p_{t-1} + N(0, q I))``, p_0 = (1, 0)
    (random start angle with ``random_phase``); jumps by ``jump_angle_deg`` with ``jump_rate`` per step."""
    import numpy as np

    def rot(a: float) -> Any:
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    T = int(cfg.seq_len)
    step = rot(2 * np.pi / float(cfg.period) * float(cfg.dt))
    jump_rot = rot(np.deg2rad(float(cfg.jump_angle_deg)))
    phi = _phases(cfg, n, rng)
    p = np.stack([np.cos(phi), np.sin(phi)], -1)
    pos = np.zeros((n, T, 2))
    jumps = np.zeros((n, T), dtype=np.int8)
    pos[:, 0] = p
    std = math.sqrt(float(cfg.prediction_noise))
    for t in range(1, T):
        p = p @ step.T + std * rng.standard_normal((n, 2))
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        if cfg.jump_rate > 0:
            j = rng.random(n) < cfg.jump_rate
            p = np.where(j[:, None], p @ jump_rot.T, p)
            jumps[:, t] = j
        pos[:, t] = p
    return {"position": pos, "jumps": jumps}


@register_motion("figure8", harmonics=lambda p: [1.0, 2.0], loop_factor=2.0)
def figure8(cfg: Any, n: int, rng: Any) -> dict:
    """Figure-eight ``(cos u, sin u cos u)``, ``u = t dt pi / period`` (+ phase): x turns at w, y at 2w."""
    import numpy as np

    u = _loop_param(cfg, n, rng)
    return {"position": np.stack([np.cos(u), np.sin(u) * np.cos(u)], -1)}


@register_motion("square")
def square(cfg: Any, n: int, rng: Any) -> dict:
    """Counter-clockwise square: side ``floor(4 u / 2 pi) mod 4`` -> (1, v), (-v, 1), (-1, -v), (v, -1),
    v = 2 frac(4 u / 2 pi) - 1 (every frame by the formula; the official code hard-codes p_0 = (1, 0)).
    Extra label ``sin_pos = (cos u, sin u)``."""
    import numpy as np

    u = _loop_param(cfg, n, rng)
    ratio = 4 * u / (2 * np.pi) + 1e-9  # guard against 4.9999 from floating point
    v = (ratio - np.floor(ratio)) * 2 - 1
    side = np.floor(ratio).astype(int) % 4
    one = np.ones_like(v)
    x = np.choose(side, [one, -v, -one, v])
    y = np.choose(side, [v, one, -v, -one])
    return {"position": np.stack([x, y], -1), "sin_pos": np.stack([np.cos(u), np.sin(u)], -1)}


# --------------------------------------------------------------------------------------------------
# further shapes (test-time generalisation, not in the paper)
# --------------------------------------------------------------------------------------------------


@register_motion("lissajous", {"a": 1.0, "b": 2.0, "ax": 1.0, "ay": 0.5, "delta": 0.0},
                 harmonics=lambda p: sorted({float(p["a"]), float(p["b"])}))
def lissajous(cfg: Any, n: int, rng: Any) -> dict:
    """``(ax cos(a u + delta), ay sin(b u))`` with integer-ratio frequencies a, b."""
    import numpy as np

    p = motion_params(cfg)
    u = _loop_param(cfg, n, rng)
    return {"position": np.stack([p["ax"] * np.cos(p["a"] * u + p["delta"]), p["ay"] * np.sin(p["b"] * u)], -1)}


@register_motion("ellipse", {"rx": 1.0, "ry": 0.6, "tilt_deg": 0.0})
def ellipse(cfg: Any, n: int, rng: Any) -> dict:
    """Ellipse with radii rx, ry, rotated by ``tilt_deg``."""
    import numpy as np

    p = motion_params(cfg)
    u = _loop_param(cfg, n, rng)
    x, y = p["rx"] * np.cos(u), p["ry"] * np.sin(u)
    a = np.deg2rad(p["tilt_deg"])
    return {"position": np.stack([np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y], -1)}


@register_motion("polygon", {"sides": 5.0, "radius": 1.0, "tilt_deg": 0.0})
def polygon(cfg: Any, n: int, rng: Any) -> dict:
    """Regular polygon (``sides`` corners on a circle of ``radius``), uniform speed along each edge."""
    import numpy as np

    p = motion_params(cfg)
    k = int(round(p["sides"]))
    if k < 3:
        raise ValueError(f"videos: motion_params.sides must be >= 3, got {p['sides']}")
    u = _loop_param(cfg, n, rng)
    s = (u % (2 * np.pi)) / (2 * np.pi) * k
    i = np.floor(s).astype(int) % k
    f = s - np.floor(s)
    ang = np.deg2rad(p["tilt_deg"]) + 2 * np.pi * np.arange(k + 1) / k
    cx, cy = p["radius"] * np.cos(ang), p["radius"] * np.sin(ang)
    x = (1 - f) * cx[i] + f * cx[i + 1]
    y = (1 - f) * cy[i] + f * cy[i + 1]
    return {"position": np.stack([x, y], -1)}


@register_motion("epicycle", {"k": 3.0, "c": 0.3, "r": 1.0},
                 harmonics=lambda p: [1.0, float(p["k"])])
def epicycle(cfg: Any, n: int, rng: Any) -> dict:
    """``r (cos u, sin u) + c (cos k u, sin k u)``: a circle with a small fast epicycle."""
    import numpy as np

    p = motion_params(cfg)
    u = _loop_param(cfg, n, rng)
    k = p["k"]
    return {"position": np.stack([p["r"] * np.cos(u) + p["c"] * np.cos(k * u),
                                  p["r"] * np.sin(u) + p["c"] * np.sin(k * u)], -1)}


# --------------------------------------------------------------------------------------------------
# a random test-time generalisation set
# --------------------------------------------------------------------------------------------------

#: Families drawn by :func:`draw_motions` (none of them is trained on by the paper configs).
GENERALISATION_FAMILIES = ("lissajous", "ellipse", "polygon", "epicycle")
#: Frequency pairs (a, b) of the drawn lissajous figures and harmonics k of the drawn epicycles.
LISSAJOUS_PAIRS = ((1, 2), (2, 1), (1, 3), (3, 2), (2, 3))
EPICYCLE_HARMONICS = (-3, -2, 2, 3, 4)


def draw_max_harmonic() -> int:
    """The highest harmonic of the loop frequency in the position of any motion :func:`draw_motions` can
    draw: epicycle ``|k|``, lissajous ``max(a, b)``; ellipses have only the fundamental. A polygon's corner
    harmonics ``1 + m sides`` are not counted: those above 4 carry < 0.25 % of its position variance
    (triangle to hexagon, measured by FFT), like the square of Fig. A3 whose 2-d state has only the
    fundamental."""
    return int(max(max(abs(k) for k in EPICYCLE_HARMONICS), max(max(p) for p in LISSAJOUS_PAIRS), 1))


def harmonic_model_size(n_harmonics: int) -> dict[str, int]:
    """Latent and state size for a periodic motion whose position needs harmonics 1..K of the loop frequency.

    Why: for a deterministic periodic motion every harmonic of the loop frequency is an exactly
    predictable feature of the frames (a 2-d rotation of the hidden state), so the predictive objective is
    indifferent between them and the encoder spends its L dimensions on *some* L/2 harmonics -- not
    necessarily those the position is made of (measured: a 10-d state / 5-d latent learns the epicycle's
    harmonics 1, 2, 3, 5, 6 but not its k = 4, and a 1:3 lissajous drifts away from its fundamental).
    A latent of 2K dimensions can hold harmonics 1..K together; the state has twice the latent (the
    paper's figure8 ratio, 10 / 5: hidden states for the filter's history)."""
    K = int(n_harmonics)
    if K < 1:
        raise ValueError(f"kalman: the number of harmonics must be >= 1, got {n_harmonics!r}")
    return {"latent_dim": 2 * K, "state_dim": 4 * K}


def draw_motions(seed: int, n: int, steps_per_loop: tuple[int, int] = (14, 30), dt: float = 0.1
                 ) -> list[dict[str, Any]]:
    """``n`` random motions (family, shape parameters, loop period) from ``seed``, as VideoConfig field
    dicts (``motion``, ``motion_params``, ``period``, ``dt``, ``random_phase: true``). Families cycle
    through :data:`GENERALISATION_FAMILIES` in a seeded order, so n >= 4 covers each family once.
    Pure Python (``random.Random``), so the pipeline can expand it while it builds the DAG."""
    rng = random.Random(int(seed))
    fams = list(GENERALISATION_FAMILIES)
    rng.shuffle(fams)
    out = []
    for i in range(int(n)):
        fam = fams[i % len(fams)]
        steps = rng.randint(*steps_per_loop)
        if fam == "lissajous":
            a, b = rng.choice(list(LISSAJOUS_PAIRS))
            params = {"a": float(a), "b": float(b), "ax": round(rng.uniform(0.7, 1.2), 3),
                      "ay": round(rng.uniform(0.5, 1.1), 3), "delta": round(rng.uniform(0, math.pi), 3)}
            loop = steps * max(a, b) // 1
        elif fam == "ellipse":
            params = {"rx": round(rng.uniform(0.6, 1.3), 3), "ry": round(rng.uniform(0.3, 1.0), 3),
                      "tilt_deg": round(rng.uniform(0, 180), 1)}
            loop = steps
        elif fam == "polygon":
            params = {"sides": float(rng.randint(3, 6)), "radius": round(rng.uniform(0.8, 1.3), 3),
                      "tilt_deg": round(rng.uniform(0, 120), 1)}
            loop = steps
        else:
            params = {"k": float(rng.choice(list(EPICYCLE_HARMONICS))), "c": round(rng.uniform(0.15, 0.35), 3),
                      "r": round(rng.uniform(0.8, 1.1), 3)}
            loop = steps
        factor = MOTIONS[fam].loop_factor
        out.append({"motion": fam, "motion_params": params, "period": round(loop * dt / factor, 6), "dt": dt,
                    "random_phase": True})
    return out
