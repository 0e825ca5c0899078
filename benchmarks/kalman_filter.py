"""Benchmark: batched Kalman filter + log-likelihood (ldm.models.kalman_filter) vs a straightforward
per-sequence, per-time-step loop with explicit inverses (the official code's structure).

Figure-eight config (S = 10, L = 5), B = 8 sequences of T = 100 steps, forward + backward on CPU, one
thread. Prints a table with the median times, their ratio and the max |delta log-likelihood| (float64
for the equality check, float32 for the timing, as in training).

    python benchmarks/kalman_filter.py [--reps 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ldm.objectives.entropy import gaussian_cross_entropy
from ldm.models.kalman_filter import KalmanFilter, reference_filter_loglik


def batched_loglik(kf: KalmanFilter, z: torch.Tensor) -> torch.Tensor:
    """Per-sequence log-likelihood (Eq. 15, no 2 pi constant) from the batched filter, shape [B]."""
    out = kf(z)
    return -gaussian_cross_entropy(z, out.pred_mean, out.innov_cov).sum(1)


def naive_loglik(kf: KalmanFilter, z: torch.Tensor) -> torch.Tensor:
    """Same quantity from the per-sequence, per-step loop with explicit inverses."""
    A = kf.transition()
    q = kf.log_scale.exp() * kf.log_process.exp()
    r = kf.log_scale.exp() * torch.ones(kf.L, dtype=z.dtype)
    return reference_filter_loglik(z, A, kf.offset, q, r, kf.S)[0]


def time_fwd_bwd(fn, kf: KalmanFilter, z: torch.Tensor, reps: int) -> float:
    times = []
    for _ in range(reps + 1):  # first call is a warm-up
        kf.zero_grad(set_to_none=True)
        zz = z.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        ll = fn(kf, zz)
        (-ll.sum()).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    S, L, B, T = 10, 5, a.batch, a.steps
    torch.manual_seed(0)
    kf = KalmanFilter(S, L)
    with torch.no_grad():  # a trained-looking filter: offset, anisotropic process noise, smaller scale
        kf.offset.normal_()
        kf.log_process.normal_(0.0, 0.3)
        kf.log_scale.fill_(-2.0)
    z = torch.randn(B, T, L)

    # equality of the log-likelihoods (float64) and of their gradients
    kf64 = KalmanFilter(S, L).double()
    kf64.load_state_dict({k: v.double() for k, v in kf.state_dict().items()})
    z64 = z.double().requires_grad_(True)
    ll_b = batched_loglik(kf64, z64)
    g_b = torch.autograd.grad(ll_b.sum(), z64)[0]
    ll_n = naive_loglik(kf64, z64)
    g_n = torch.autograd.grad(ll_n.sum(), z64)[0]
    d64 = float((ll_b - ll_n).detach().abs().max())
    dg64 = float((g_b - g_n).detach().abs().max())
    with torch.no_grad():
        d32 = float((batched_loglik(kf, z) - naive_loglik(kf, z)).abs().max())
        ll_mag = float(ll_n.abs().max())

    t_b = time_fwd_bwd(batched_loglik, kf, z, a.reps)
    t_n = time_fwd_bwd(naive_loglik, kf, z, a.reps)
    rows = [
        ("batched filter + loss (Cholesky, shared covariances)", f"{1e3 * t_b:9.1f}"),
        ("per-sequence per-step loop (explicit inverses)", f"{1e3 * t_n:9.1f}"),
    ]
    print(f"Kalman filter + log-likelihood, forward+backward, figure8 config: S={S} L={L} B={B} T={T}, "
          f"CPU threads={a.threads}, median of {a.reps}")
    print(f"{'implementation':<55} {'time [ms]':>9}")
    for name, t in rows:
        print(f"{name:<55} {t}")
    print(f"{'speed-up (loop / batched)':<55} {t_n / t_b:9.1f}x")
    print(f"{'max |delta log-lik| per sequence, float64':<55} {d64:9.2e}   (|log-lik| up to {ll_mag:.1f})")
    print(f"{'max |delta d loglik / dz|, float64':<55} {dg64:9.2e}")
    print(f"{'max |delta log-lik| per sequence, float32':<55} {d32:9.2e}")
    ok = t_n / t_b >= 5.0 and d64 <= 1e-5
    print("PASS" if ok else "FAIL", "(criteria: speed-up >= 5x and float64 |delta log-lik| <= 1e-5)")


if __name__ == "__main__":
    main()
