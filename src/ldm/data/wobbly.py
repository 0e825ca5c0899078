"""The "wobbly" nonlinear dynamical system of the identifiability experiment (paper Sec. 7.1, Eq. 16,
Fig. 5B; predictive.md §2).

State z = (x, y), r = ‖z‖, θ = atan2(y, x). Continuous dynamics (Eq. 16)::

    dz/dt = a k cos(k (θ − θ0)) · z/‖z‖ + J z,     J = [[0, −1], [1, 0]]

(unit angular speed, a radius that wobbles with k lobes per turn), a = 0.5, k = 4, θ0 = −3π/8. One
classical RK4 step of size dt = 0.3, then process noise ε ~ N(0, q I) with q = 0.1 (a variance). The
initial state is uniform on the unit circle. Frames: a Gaussian dot (σ = 1 px, peak 1) on a 10×10 image
at the state's position (as the Kalman dot videos), then a fixed "swirl" (skimage ``swirl`` with
strength 10, radius 200, bilinear, mirror padding) — a linear map of the image, precomputed once as a
100×100 matrix (:func:`swirl_matrix`). Optional pixel noise (variance ``observation_noise``, 0 in the
paper).

Clamping (documented, flagged per frame). Eq. 16 has no radial restoring force, so with q = 0.1 the
radius performs a random walk; positions outside the visible window [−3, 2.4]² are drawn at the image
border (the pixel coordinate is clipped), so the frame no longer determines the state. Every split
carries a boolean ``clamped`` [N, T] (True where any coordinate lies outside the window); the
evaluation reports R² on all frames and on unclamped frames. ``motion_params.restoring`` > 0 adds a
restoring drift −λ(r − 1) to dr/dt (not in the paper; off by default).

Pluggable parts, each a small registry:

* motions (:data:`MOTIONS`): a vector field f(z, **params) integrated by RK4 + Gaussian process noise,
  with an initial-state sampler. ``wobbly`` (Eq. 16; for state_dim = 2m the m planes (z_0, z_1),
  (z_2, z_3), … each follow Eq. 16 independently — the higher-dimensional variant for Fig. A7),
  ``rotation`` (dz/dt = ω J z, a linear control system).
* renderers (:data:`RENDERERS`): ``swirl_dot`` (the paper's), ``dot`` (no swirl), ``random_mlp`` (a
  frozen random LeakyReLU MLP state → pixels, the official code's ``random`` post-processing, any
  state_dim; never clamped).

Train and test splits come from independent child seeds of one data seed (:func:`split_seeds`); the
renderer's own randomness (random_mlp weights) from a third child, shared by both splits.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "WobblyConfig", "Motion", "MOTIONS", "RENDERERS", "register_motion", "register_renderer",
    "wobbly_field", "rotation_field", "rk4_step", "simulate", "split_seeds", "swirl_matrix",
    "dot_images", "visible_window", "clamped_mask", "make_renderer", "render", "grid_states",
    "generate_split", "generate_dataset", "save_split", "load_split", "write_dataset",
]

# --------------------------------------------------------------------------------------------------
# motions: vector fields + initial states
# --------------------------------------------------------------------------------------------------

VectorField = Callable[..., np.ndarray]
InitSampler = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Motion:
    """A motion: ``field(z [n, d], **params) -> dz/dt``, ``init(n, d, rng) -> z_0``, default params and a
    check of the state dimension."""

    name: str
    field: VectorField
    init: InitSampler
    defaults: Mapping[str, float]
    even_dim: bool = False


MOTIONS: dict[str, Motion] = {}


def register_motion(name: str, init: InitSampler, defaults: Mapping[str, float], even_dim: bool = False
                    ) -> Callable[[VectorField], VectorField]:
    """Decorator adding a vector field to :data:`MOTIONS` under ``name``."""

    def deco(fn: VectorField) -> VectorField:
        if name in MOTIONS:
            raise ValueError(f"wobbly: motion {name!r} is already registered")
        MOTIONS[name] = Motion(name, fn, init, dict(defaults), even_dim)
        return fn

    return deco


def unit_circle_init(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """z_0 = u/‖u‖ per plane, u ~ N(0, I) (uniform on the unit circle of every (z_2i, z_2i+1) plane)."""
    u = rng.standard_normal((n, d // 2, 2))
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    return u.reshape(n, d)


def _planes(z: np.ndarray) -> np.ndarray:
    return z.reshape(*z.shape[:-1], z.shape[-1] // 2, 2)


@register_motion("wobbly", unit_circle_init,
                 {"amplitude": 0.5, "frequency": 4.0, "phase": -3.0 * math.pi / 8.0, "restoring": 0.0},
                 even_dim=True)
def wobbly_field(z: np.ndarray, amplitude: float = 0.5, frequency: float = 4.0,
                 phase: float = -3.0 * math.pi / 8.0, restoring: float = 0.0) -> np.ndarray:
    """Eq. 16 per plane: dz/dt = [a k cos(k(θ − θ0)) − λ(r − 1)] z/r + J z  (λ = ``restoring``, 0 in the paper)."""
    p = _planes(z)
    x, y = p[..., 0], p[..., 1]
    r = np.maximum(np.hypot(x, y), 1e-12)
    th = np.arctan2(y, x)
    radial = amplitude * frequency * np.cos(frequency * (th - phase))
    if restoring:
        radial = radial - restoring * (r - 1.0)
    out = np.stack([radial * x / r - y, radial * y / r + x], axis=-1)
    return out.reshape(z.shape)


@register_motion("rotation", unit_circle_init, {"omega": 1.0}, even_dim=True)
def rotation_field(z: np.ndarray, omega: float = 1.0) -> np.ndarray:
    """dz/dt = ω J z per plane (uniform rotation; a linear reference system)."""
    p = _planes(z)
    return (omega * np.stack([-p[..., 1], p[..., 0]], axis=-1)).reshape(z.shape)


def rk4_step(f: Callable[[np.ndarray], np.ndarray], z: np.ndarray, dt: float) -> np.ndarray:
    """One classical Runge–Kutta step of size dt."""
    k1 = f(z)
    k2 = f(z + 0.5 * dt * k1)
    k3 = f(z + 0.5 * dt * k2)
    k4 = f(z + dt * k3)
    return z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def simulate(motion: str, n: int, seq_len: int, dt: float, process_noise: float, rng: np.random.Generator,
             state_dim: int = 2, params: Mapping[str, float] | None = None) -> np.ndarray:
    """States [n, seq_len, state_dim]: z_0 from the motion's sampler, z_{t+1} = RK4(z_t) + N(0, q I)."""
    if motion not in MOTIONS:
        raise ValueError(f"wobbly: unknown motion {motion!r}; registered: {sorted(MOTIONS)}")
    m = MOTIONS[motion]
    if m.even_dim and state_dim % 2:
        raise ValueError(f"wobbly: motion {motion!r} needs an even state_dim, got {state_dim}")
    kw = {**m.defaults, **dict(params or {})}
    unknown = sorted(set(kw) - set(m.defaults))
    if unknown:
        raise ValueError(f"wobbly: unknown motion_params {unknown} for motion {motion!r}; known: {sorted(m.defaults)}")
    z = m.init(n, state_dim, rng)
    out = np.empty((n, seq_len, state_dim))
    out[:, 0] = z
    std = math.sqrt(process_noise)
    for t in range(1, seq_len):
        z = rk4_step(lambda s: m.field(s, **kw), z, dt) + std * rng.standard_normal((n, state_dim))
        out[:, t] = z
    return out


# --------------------------------------------------------------------------------------------------
# renderers
# --------------------------------------------------------------------------------------------------


def visible_window(image_dim: int = 10) -> tuple[float, float]:
    """World-coordinate range drawn without clipping: pixel c(v) = (v + 3)·D/6 ∈ [0, D − 1]."""
    return -3.0, -3.0 + 6.0 * (image_dim - 1) / image_dim


def dot_images(pos: np.ndarray, image_dim: int = 10) -> np.ndarray:
    """Gaussian dot (σ = 1 px, peak 1) at pixel (clip((x+3)D/6), clip((y+3)D/6)); rows follow x.

    ``pos`` [..., 2] → [..., D²] (row-major), the same rendering as the Kalman dot videos.
    """
    c = np.clip((pos + 3.0) * image_dim / 6.0, 0.0, image_dim - 1.0)
    idx = np.arange(image_dim, dtype=np.float64)
    gx = np.exp(-0.5 * (idx - c[..., 0:1]) ** 2)  # [..., D] over rows
    gy = np.exp(-0.5 * (idx - c[..., 1:2]) ** 2)  # [..., D] over columns
    return (gx[..., :, None] * gy[..., None, :]).reshape(*pos.shape[:-1], image_dim * image_dim)


def _mirror(i: np.ndarray, n: int) -> np.ndarray:
    """Integer indices reflected about the edge pixel centres (scipy ``mirror`` = skimage ``reflect``)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i > n - 1, period - i, i)


def swirl_matrix(image_dim: int = 10, strength: float = 10.0, radius: float = 200.0,
                 rotation: float = 0.0) -> np.ndarray:
    """The swirl as a [D², D²] matrix M (frame = M · vec(image)); equals ``skimage.transform.swirl``
    (centre (D/2, D/2), order 1, mode 'reflect') on every image.

    Output pixel (row r, col c): ρ = √((c − D/2)² + (r − D/2)²), θ' = rotation + strength·exp(−ρ/ρ0) +
    atan2(r − D/2, c − D/2), ρ0 = radius·ln2/5; it samples the input bilinearly at
    (col, row) = (D/2 + ρ cos θ', D/2 + ρ sin θ') with mirrored borders.
    """
    D = image_dim
    rows, cols = np.meshgrid(np.arange(D, dtype=np.float64), np.arange(D, dtype=np.float64), indexing="ij")
    c0 = D / 2.0
    rho = np.hypot(cols - c0, rows - c0)
    theta = rotation + strength * np.exp(-rho / (radius / 5.0 * math.log(2.0))) + np.arctan2(rows - c0, cols - c0)
    src_c = c0 + rho * np.cos(theta)
    src_r = c0 + rho * np.sin(theta)
    M = np.zeros((D * D, D * D))
    out_idx = np.arange(D * D)
    r0, c0i = np.floor(src_r).astype(int), np.floor(src_c).astype(int)
    fr, fc = (src_r - r0).ravel(), (src_c - c0i).ravel()
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = _mirror((r0 + dr).ravel(), D)
            cc = _mirror((c0i + dc).ravel(), D)
            np.add.at(M, (out_idx, rr * D + cc), wr * wc)
    return M


Renderer = Callable[[np.ndarray], np.ndarray]
RendererFactory = Callable[["WobblyConfig", np.random.SeedSequence], Renderer]
RENDERERS: dict[str, RendererFactory] = {}


def register_renderer(name: str) -> Callable[[RendererFactory], RendererFactory]:
    """Decorator adding ``factory(cfg, seed) -> render(states [..., d]) -> frames [..., P]``."""

    def deco(fn: RendererFactory) -> RendererFactory:
        if name in RENDERERS:
            raise ValueError(f"wobbly: renderer {name!r} is already registered")
        RENDERERS[name] = fn
        return fn

    return deco


def _need_2d(cfg: "WobblyConfig") -> None:
    if cfg.state_dim != 2:
        raise ValueError(f"wobbly: renderer {cfg.renderer!r} draws a 2-D dot; state_dim is {cfg.state_dim} "
                         f"(use renderer: random_mlp for higher-dimensional states)")


@register_renderer("dot")
def _dot_renderer(cfg: "WobblyConfig", seed: np.random.SeedSequence) -> Renderer:
    _need_2d(cfg)
    return lambda s: dot_images(s, cfg.image_dim)


@register_renderer("swirl_dot")
def _swirl_dot_renderer(cfg: "WobblyConfig", seed: np.random.SeedSequence) -> Renderer:
    _need_2d(cfg)
    Mt = swirl_matrix(cfg.image_dim, cfg.swirl_strength, cfg.swirl_radius).T.copy()
    return lambda s: dot_images(s, cfg.image_dim) @ Mt


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A (semi-)orthogonal [rows, cols] matrix (QR of a Gaussian, sign-fixed), like torch's init."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


@register_renderer("random_mlp")
def _random_mlp_renderer(cfg: "WobblyConfig", seed: np.random.SeedSequence) -> Renderer:
    """Frozen MLP d → h → h → h → h → D² (LeakyReLU, slope ``mlp_negative_slope``, after the first four layers; their weights
    orthogonal, biases U(±1/√fan_in); the last layer bias-free, U(±1/√h)). Injective for h ≥ d."""
    d, h, P = cfg.state_dim, cfg.mlp_hidden, cfg.image_dim ** 2
    slope = float(cfg.mlp_negative_slope)
    if not 0.0 < slope <= 1.0:
        raise ValueError(f"wobbly: mlp_negative_slope must be in (0, 1] (injective), got {slope}")
    if h < d:
        raise ValueError(f"wobbly: mlp_hidden={h} < state_dim={d} would make the random_mlp map non-injective")
    rng = np.random.default_rng(seed)
    dims = [d, h, h, h, h]
    layers = []
    for i in range(4):
        W = _orthogonal(rng, dims[i + 1], dims[i])
        b = rng.uniform(-1, 1, dims[i + 1]) / math.sqrt(dims[i])
        layers.append((W, b))
    W_out = rng.uniform(-1, 1, (P, h)) / math.sqrt(h)

    def render_fn(s: np.ndarray) -> np.ndarray:
        a = s
        for W, b in layers:
            a = a @ W.T + b
            a = np.where(a > 0, a, slope * a)
        return a @ W_out.T

    return render_fn


# --------------------------------------------------------------------------------------------------
# configuration and data sets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WobblyConfig:
    """Parameters of a wobbly data set (defaults: the paper / official ``wobbly`` configs)."""

    motion: str = "wobbly"
    motion_params: Mapping[str, float] = field(default_factory=dict)
    state_dim: int = 2
    seq_len: int = 100
    dt: float = 0.3
    process_noise: float = 0.1  # variance q of the process noise ε
    observation_noise: float = 0.0  # pixel-noise variance (η in Eq. 16; 0 in the official configs)
    renderer: str = "swirl_dot"
    image_dim: int = 10
    swirl_strength: float = 10.0
    swirl_radius: float = 200.0
    mlp_hidden: int = 5
    mlp_negative_slope: float = 0.01  # LeakyReLU slope of random_mlp (torch default, as the official code)
    n_train: int = 10_000
    n_test: int = 32

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"wobbly: unknown motion {self.motion!r}; registered: {sorted(MOTIONS)}")
        if self.renderer not in RENDERERS:
            raise ValueError(f"wobbly: unknown renderer {self.renderer!r}; registered: {sorted(RENDERERS)}")
        for name in ("state_dim", "seq_len", "image_dim", "n_train", "n_test", "mlp_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"wobbly: {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("dt", "process_noise", "observation_noise"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"wobbly: {name} must be >= 0, got {getattr(self, name)!r}")
        m = MOTIONS[self.motion]
        unknown = sorted(set(self.motion_params) - set(m.defaults))
        if unknown:
            raise ValueError(f"wobbly: unknown motion_params {unknown} for motion {self.motion!r}; "
                             f"known: {sorted(m.defaults)}")
        if m.even_dim and self.state_dim % 2:
            raise ValueError(f"wobbly: motion {self.motion!r} needs an even state_dim, got {self.state_dim}")
        if self.renderer in ("dot", "swirl_dot") and self.state_dim != 2:
            raise ValueError(f"wobbly: renderer {self.renderer!r} needs state_dim 2, got {self.state_dim}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WobblyConfig":
        """Build from a config mapping; unknown keys raise an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"wobbly: unknown config key(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["motion_params"] = {**MOTIONS[self.motion].defaults, **dict(self.motion_params)}
        return out

    @property
    def pixels(self) -> int:
        return self.image_dim ** 2


def split_seeds(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent seed sequences {train, test, renderer} derived from one data seed."""
    train, test, renderer = np.random.SeedSequence(int(seed)).spawn(3)
    return {"train": train, "test": test, "renderer": renderer}


def make_renderer(cfg: WobblyConfig, seed: int) -> Renderer:
    """The data set's renderer (states [..., d] → noise-free frames [..., P]) for data seed ``seed``."""
    return RENDERERS[cfg.renderer](cfg, split_seeds(seed)["renderer"])


def render(states: np.ndarray, cfg: WobblyConfig, seed: int, chunk: int = 200_000) -> np.ndarray:
    """Noise-free float32 frames of arbitrary states [..., d] (e.g. the Fig. 5C grid)."""
    fn = make_renderer(cfg, seed)
    flat = np.asarray(states, dtype=np.float64).reshape(-1, cfg.state_dim)
    out = np.empty((flat.shape[0], cfg.pixels), dtype=np.float32)
    for i in range(0, flat.shape[0], chunk):
        out[i:i + chunk] = fn(flat[i:i + chunk])
    return out.reshape(*np.shape(states)[:-1], cfg.pixels)


def clamped_mask(states: np.ndarray, cfg: WobblyConfig) -> np.ndarray:
    """True where the frame cannot show the state: a coordinate outside the visible window (dot renderers).

    The random_mlp renderer never clamps (all False).
    """
    if cfg.renderer not in ("dot", "swirl_dot"):
        return np.zeros(states.shape[:-1], dtype=bool)
    lo, hi = visible_window(cfg.image_dim)
    return ((states < lo) | (states > hi)).any(-1)


def grid_states(n: int = 50, lim: float = 2.0, state_dim: int = 2) -> np.ndarray:
    """An n×n grid of positions in [−lim, lim]² (Fig. 5C), shape [n, n, state_dim]; [i, j] = (x_i, y_j),
    further state coordinates 0."""
    v = np.linspace(-lim, lim, n)
    g = np.zeros((n, n, state_dim))
    g[..., 0] = v[:, None]
    g[..., 1] = v[None, :]
    return g


def generate_split(cfg: WobblyConfig, n: int, seed: np.random.SeedSequence | int, renderer: Renderer,
                   chunk: int = 1000) -> dict[str, np.ndarray]:
    """``n`` sequences: frames [n, T, P] float32, state [n, T, d] float32, clamped [n, T] bool."""
    rng = np.random.default_rng(seed)
    states = simulate(cfg.motion, n, cfg.seq_len, cfg.dt, cfg.process_noise, rng, cfg.state_dim,
                      cfg.motion_params)
    frames = np.empty((n, cfg.seq_len, cfg.pixels), dtype=np.float32)
    std = math.sqrt(cfg.observation_noise)
    for i in range(0, n, chunk):
        f = renderer(states[i:i + chunk])
        if std > 0:
            f = f + std * rng.standard_normal(f.shape)
        frames[i:i + chunk] = f
    return {"frames": frames, "state": states.astype(np.float32), "clamped": clamped_mask(states, cfg)}


def generate_dataset(cfg: WobblyConfig, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train and test splits from independent child seeds of ``seed`` (one shared renderer)."""
    seeds = split_seeds(seed)
    fn = RENDERERS[cfg.renderer](cfg, seeds["renderer"])
    return generate_split(cfg, cfg.n_train, seeds["train"], fn), generate_split(cfg, cfg.n_test, seeds["test"], fn)


REQUIRED = ("frames", "state", "clamped")


def save_split(path: Path | str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write a split (+ JSON ``meta``) to an uncompressed npz atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(dict(meta), sort_keys=True)), **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_split(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a split written by :func:`save_split`: (arrays, meta). Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"wobbly: missing data file {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ValueError(f"wobbly: corrupt data file {path}: {err}") from err
    for key in REQUIRED:
        if key not in arrays:
            raise ValueError(f"wobbly: data file {path} lacks array {key!r}")
    return arrays, meta


def write_dataset(cfg: WobblyConfig, seed: int, out_dir: Path | str) -> dict[str, Path]:
    """Generate and save ``train.npz`` and ``test.npz`` under ``out_dir``; meta holds config, seed, split
    and the fraction of clamped frames."""
    out_dir = Path(out_dir)
    train, test = generate_dataset(cfg, seed)
    paths = {}
    for name, split in (("train", train), ("test", test)):
        meta = {"config": cfg.to_dict(), "seed": int(seed), "split": name,
                "clamped_fraction": float(split["clamped"].mean())}
        paths[name] = save_split(out_dir / f"{name}.npz", split, meta)
    return paths


def config_from_meta(meta: Mapping[str, Any]) -> WobblyConfig:
    """The :class:`WobblyConfig` stored in a split's meta."""
    if "config" not in meta:
        raise ValueError("wobbly: split meta has no 'config' entry")
    return WobblyConfig.from_dict(meta["config"])
