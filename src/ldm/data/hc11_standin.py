"""Offline stand-in for hc-11: simulated CA1 place cells on a 1.6-m linear track (hc11.md §3),
written with pynwb in the NWB layout of DANDI 000044, so that the real reader reads it.

Trajectory: back-and-forth traversals of a 1.6-m track, each ≈ 3 s with a bell-shaped speed profile
(position ``L (1 - cos(pi t / T)) / 2``, peak ≈ 0.85 m/s), separated by pauses at the reward ends
that fill the rest of the maze epoch; position sampled every 25.6 ms (39.0625 Hz), linearised
position NaN while the rat is not running (as in the DANDI file).

Cells: 120 pyramidal-like units ("excitatory"), each with an independent Gaussian place field per
running direction with probability ``p_field`` (centres uniform on the track, σ 8–15 cm, i.e. 19–35 cm
at half maximum, lognormal peak rates with median 8 Hz), background 0.1–0.5 Hz; 17 interneurons
("inhibitory", lognormal rates, median 15 Hz, weakly speed-modulated). Spikes are inhomogeneous
Poisson per position sample. Short PRE and POST epochs with background firing surround the maze
epoch so that the reader's epoch selection is exercised.

NWB layout (DANDI 000044, hc11.md §1.2): ``units`` with columns spike_times, cell_type, location,
shank_id; ``processing/behavior/1.6mLinearMazePosition/1.6mLinearMazeSpatialSeries`` (2-D, m) and
``processing/behavior/1.6mLinearMazeLinearizedPosition/1.6mLinearMazeLinearizedTimeSeries`` (1-D),
both stored with ``starting_time`` and the converter's quirk ``rate = 0.0256`` (the period, not a
rate); ``epochs`` with a ``label`` column (PREEpoch, MazeEpoch, POSTEpoch); ``behavior/states``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

POSITION_PERIOD = 512 / 20000  # 0.0256 s: position sampling at 20 kHz / 512 = 39.0625 Hz
MAZE = "1.6mLinearMaze"


@dataclass(frozen=True)
class PlaceCellSimulation:
    """Parameters of the stand-in (defaults follow hc11.md §3 and the Achilles session)."""

    seed: int = 1
    track_length: float = 1.6
    maze_duration: float = 2067.5  # s, Achilles MazeEpoch
    n_traversals: int = 84  # ≈ 42 laps
    traversal_time: tuple[float, float] = (2.5, 3.5)  # s per one-way run
    pre_duration: float = 60.0  # s of PRE epoch (background firing only)
    post_duration: float = 60.0
    n_excitatory: int = 120
    n_inhibitory: int = 17
    p_field: float = 0.45  # probability of a place field per unit and direction
    field_sigma: tuple[float, float] = (0.08, 0.15)  # m
    peak_rate_median: float = 8.0  # Hz, lognormal
    peak_rate_sigma: float = 0.6
    peak_rate_max: float = 40.0
    background_rate: tuple[float, float] = (0.1, 0.5)  # Hz
    interneuron_rate_median: float = 15.0
    position_noise: float = 0.003  # m, tracking jitter of the 2-D position

    def __post_init__(self) -> None:
        if self.n_traversals < 2 or self.n_traversals % 2:
            raise ValueError(f"n_traversals must be even and >= 2 (back and forth), got {self.n_traversals}")
        run_max = self.n_traversals * self.traversal_time[1]
        if run_max >= self.maze_duration:
            raise ValueError(
                f"maze_duration {self.maze_duration} s is too short for {self.n_traversals} traversals of up to "
                f"{self.traversal_time[1]} s"
            )


def simulate_trajectory(sim: PlaceCellSimulation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position samples of the maze epoch (times relative to its start): (t, linear position with NaN
    while not running, running direction +1/-1/0)."""
    n = int(round(sim.maze_duration / POSITION_PERIOD))
    t = np.arange(n) * POSITION_PERIOD
    lin = np.full(n, np.nan)
    direction = np.zeros(n, dtype=np.int8)
    run_T = rng.uniform(*sim.traversal_time, size=sim.n_traversals)
    pause_total = sim.maze_duration - run_T.sum()
    pauses = rng.dirichlet(np.full(sim.n_traversals + 1, 2.0)) * pause_total
    start = pauses[0]
    for k, T in enumerate(run_T):
        sel = (t >= start) & (t < start + T)
        u = (t[sel] - start) / T
        frac = (1 - np.cos(np.pi * u)) / 2
        rightward = k % 2 == 0
        lin[sel] = sim.track_length * (frac if rightward else 1 - frac)
        direction[sel] = 1 if rightward else -1
        start += T + pauses[k + 1]
    return t, lin, direction


def _rest_position(lin: np.ndarray, track_length: float) -> np.ndarray:
    """Position on the track at every sample: the running position, else the end the rat last reached."""
    valid = ~np.isnan(lin)
    last = np.maximum.accumulate(np.where(valid, np.arange(len(lin)), -1))
    ends = np.where(last >= 0, np.round(lin[np.maximum(last, 0)] / track_length) * track_length, 0.0)
    return np.where(valid, lin, ends)


def _draw_cells(sim: PlaceCellSimulation, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Place fields per excitatory unit and direction (0: rightward, 1: leftward) and background rates of
    all units, drawn right after the trajectory (the order fixes the simulation of a seed)."""
    n_units = sim.n_excitatory + sim.n_inhibitory
    has_field = rng.random((sim.n_excitatory, 2)) < sim.p_field
    centre = rng.uniform(0, sim.track_length, size=(sim.n_excitatory, 2))
    sigma = rng.uniform(*sim.field_sigma, size=(sim.n_excitatory, 2))
    peak = np.minimum(sim.peak_rate_max, sim.peak_rate_median * np.exp(sim.peak_rate_sigma * rng.standard_normal((sim.n_excitatory, 2))))
    background = rng.uniform(*sim.background_rate, size=n_units)
    return has_field, centre, sigma, peak, background


def tuning_curves(sim: PlaceCellSimulation, grid: np.ndarray) -> np.ndarray:
    """The simulation's true running rates (Hz) of the excitatory units, [len(grid), 2 (right, left), n_exc]:
    background + Gaussian place field; the ground truth of the simulation's Bayesian-decoder bound."""
    rng = np.random.default_rng(sim.seed)
    simulate_trajectory(sim, rng)
    has_field, centre, sigma, peak, background = _draw_cells(sim, rng)
    x = np.asarray(grid, float)[:, None]
    rates = np.empty((len(grid), 2, sim.n_excitatory))
    for j in range(2):
        rates[:, j] = background[: sim.n_excitatory] + has_field[:, j] * peak[:, j] * np.exp(
            -0.5 * ((x - centre[:, j]) / sigma[:, j]) ** 2)
    return rates


def simulate_session(sim: PlaceCellSimulation) -> dict:
    """Simulate the whole session: spike trains, position samples, epochs (absolute session clock)."""
    rng = np.random.default_rng(sim.seed)
    maze_start = sim.pre_duration
    maze_stop = maze_start + sim.maze_duration
    t_rel, lin, direction = simulate_trajectory(sim, rng)
    t_pos = maze_start + t_rel
    n_units = sim.n_excitatory + sim.n_inhibitory
    has_field, centre, sigma, peak, background = _draw_cells(sim, rng)
    inter_rate = sim.interneuron_rate_median * np.exp(0.4 * rng.standard_normal(sim.n_inhibitory))
    speed = np.abs(np.gradient(np.nan_to_num(lin), POSITION_PERIOD))
    speed[np.isnan(lin)] = 0.0
    # rates per position sample [n_samples, n_units]
    rates = np.empty((len(t_pos), n_units))
    rates[:, : sim.n_excitatory] = background[: sim.n_excitatory]
    for d_idx, d in enumerate((1, -1)):
        running = direction == d
        x = lin[running][:, None]
        field = has_field[:, d_idx] * peak[:, d_idx] * np.exp(-0.5 * ((x - centre[:, d_idx]) / sigma[:, d_idx]) ** 2)
        rates[running, : sim.n_excitatory] += field
    rates[:, sim.n_excitatory :] = inter_rate * (1 + 0.5 * np.tanh(speed / 0.5))[:, None]
    counts = rng.poisson(rates * POSITION_PERIOD)
    spike_times = []
    for u in range(n_units):
        c = counts[:, u]
        maze_spikes = np.repeat(t_pos, c) + rng.random(int(c.sum())) * POSITION_PERIOD
        rest_rate = background[u] if u < sim.n_excitatory else inter_rate[u - sim.n_excitatory] * 0.7
        pre = rng.uniform(0, maze_start, size=rng.poisson(rest_rate * sim.pre_duration))
        post = rng.uniform(maze_stop, maze_stop + sim.post_duration, size=rng.poisson(rest_rate * sim.post_duration))
        spike_times.append(np.sort(np.concatenate([pre, maze_spikes, post])))
    rest = _rest_position(lin, sim.track_length)
    xy = np.stack([rest + sim.position_noise * rng.standard_normal(len(t_pos)), 0.02 + sim.position_noise * rng.standard_normal(len(t_pos))], axis=1)
    return {
        "spike_times": spike_times,
        "cell_type": ["excitatory"] * sim.n_excitatory + ["inhibitory"] * sim.n_inhibitory,
        "position_start": maze_start,
        "linearized": lin,
        "xy": xy,
        "direction": direction,
        "epochs": [("PREEpoch", 0.0, maze_start), ("MazeEpoch", maze_start, maze_stop), ("POSTEpoch", maze_stop, maze_stop + sim.post_duration)],
        "fields": {"has_field": has_field, "centre": centre, "sigma": sigma, "peak": peak,
                   "background": background[: sim.n_excitatory]},
    }


def _units_table(spike_times: list[np.ndarray], cell_type: list[str]):
    """The ``units`` table with its ragged ``spike_times`` stored as one flat array + index
    (building it unit by unit makes hdmf convert every spike time separately)."""
    from hdmf.common import VectorData, VectorIndex
    from pynwb.misc import Units

    n = len(spike_times)
    flat = VectorData(name="spike_times", description="the spike times for each unit in seconds", data=np.concatenate(spike_times))
    index = VectorIndex(name="spike_times_index", data=np.cumsum([len(t) for t in spike_times]), target=flat)
    columns = [
        flat,
        index,
        VectorData(name="cell_type", description="excitatory or inhibitory (putative pyramidal cell / interneuron)", data=list(cell_type)),
        VectorData(name="location", description="brain region", data=["CA1"] * n),
        VectorData(name="shank_id", description="shank of the silicon probe", data=np.arange(n) % 8 + 1),
    ]
    return Units(name="units", description="sorted units (simulated)", id=list(range(n)), columns=columns)


def write_standin_nwb(path: str | os.PathLike, sim: PlaceCellSimulation | None = None, *, period_as_rate: bool = True) -> Path:
    """Simulate a session and write it in the DANDI 000044 layout (atomically: temp file, rename).

    ``period_as_rate=True`` reproduces the converter's quirk (``rate`` attribute = 0.0256, the
    sampling period); False stores the true rate 39.0625 Hz. The reader handles both.
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.behavior import Position, SpatialSeries
    from pynwb.epoch import TimeIntervals

    sim = sim or PlaceCellSimulation()
    session = simulate_session(sim)
    nwb = NWBFile(
        session_description="STAND-IN: simulated place cells on a 1.6 m linear track (ldm.data.hc11_standin); "
        "layout of DANDI 000044 (hc-11, Grosmark & Buzsaki 2016)",
        identifier=f"ldm-hc11-standin-seed{sim.seed}",
        session_start_time=datetime(2013, 10, 25, tzinfo=timezone.utc),
        session_id="standin-Achilles-10252013",
        notes=str(asdict(sim)),
    )
    nwb.units = _units_table(session["spike_times"], session["cell_type"])
    behavior = nwb.create_processing_module(name="behavior", description="position and sleep states")
    rate = POSITION_PERIOD if period_as_rate else 1.0 / POSITION_PERIOD
    pos = Position(name=f"{MAZE}Position")
    pos.add_spatial_series(
        SpatialSeries(
            name=f"{MAZE}SpatialSeries",
            data=session["xy"],
            reference_frame="origin at the left end of the track",
            starting_time=session["position_start"],
            rate=rate,
            unit="m",
        )
    )
    lin = Position(name=f"{MAZE}LinearizedPosition")
    lin.add_spatial_series(
        SpatialSeries(
            name=f"{MAZE}LinearizedTimeSeries",
            data=session["linearized"],
            reference_frame="0 at the left end of the track; NaN while not running along the track",
            starting_time=session["position_start"],
            rate=rate,
            unit="m",
        )
    )
    behavior.add(pos)
    behavior.add(lin)
    states = TimeIntervals(name="states", description="sleep/wake states")
    states.add_column(name="label", description="state")
    for label, start, stop in session["epochs"]:
        states.add_interval(start_time=start, stop_time=stop, label="Awake" if label == "MazeEpoch" else "Non-REM")
    behavior.add(states)
    nwb.add_epoch_column(name="label", description="PREEpoch, MazeEpoch or POSTEpoch")
    for label, start, stop in session["epochs"]:
        nwb.add_epoch(start_time=start, stop_time=stop, label=label)
    from ldm.pipeline.io import atomic_path

    with atomic_path(path) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return Path(path)
