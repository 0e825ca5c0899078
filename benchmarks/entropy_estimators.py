"""Benchmark: forward+backward time and peak memory of the LDM entropy estimators.

    python benchmarks/entropy_estimators.py [--batch 256] [--dim 2048] [--threads 1] [--devices cpu,cuda]

Every estimator is run at B = 256 on a (B, d) batch with d = 2048 ("single", one view) and
d = 4096 ("joint", the concatenation [z1 ‖ z2]), next to a naive reference that
materialises the (B, B, d) pairwise tensor — what the official code's nested ``torch.vmap``
does (images.md §7).  For the LogDet estimators there is no pairwise tensor; their
reference is the direct d × d computation in float32 (``slogdet`` of the covariance).

Each (estimator, mode, implementation, device) case runs in a fresh subprocess:
  * time  = median wall time of ``reps`` forward+backward passes after one warm-up;
  * peak  = CPU: rise of the process's peak resident set size (VmHWM, reset through
    /proc/self/clear_refs) over the resident size just before one warm forward+backward
    (children run with MALLOC_MMAP_THRESHOLD_=65536, so blocks ≥ 64 KiB are mapped and
    unmapped individually and the peak reflects the live tensors of that pass);
    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation before the pass.
The input tensor itself is allocated before the baseline and is not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

# ------------------------------------------------------------------------------------------
# estimators and naive references
# ------------------------------------------------------------------------------------------


def _builders():
    import torch
    import torch.nn.functional as F

    from ldm.objectives import entropy as ee

    def naive_gaussian_kde(x, kappa=5.0):
        d2 = (x[:, None, :] - x[None, :, :]).pow(2).mean(-1)  # (B, B, d) materialised
        return -torch.log(torch.exp(-kappa * d2).sum(1) + 1e-8).mean()

    def naive_vmf_kde(x, gamma=5.0):
        u = F.normalize(x, dim=-1)
        dots = (u[:, None, :] * u[None, :, :]).sum(-1)
        return -torch.log(torch.exp(gamma * dots).sum(1)).mean()

    def naive_dirichlet_kde(x, beta=5.0):
        z = torch.softmax(x, -1)
        logz = torch.log(z.clamp_min(1e-8))
        cross = (z[None, :, :] * logz[:, None, :]).sum(-1)  # [i, j] = Σ_k z_jk log z_ik
        logits = beta * cross - torch.lgamma(beta * z + 1).sum(-1)[None, :]
        return -torch.log(torch.exp(logits).sum(1)).mean()

    def naive_knn(x, full=False, k=3):
        n, d = x.shape
        dist = torch.linalg.vector_norm(x[:, None, :] - x[None, :, :], dim=-1)
        dist = dist + torch.diag(torch.full((n,), float("inf"), dtype=x.dtype))
        r = dist.topk(k, dim=1, largest=False).values[:, -1]
        if full:
            return d * torch.log(r).mean()
        r = torch.minimum(r, torch.quantile(r.detach(), 0.9))
        return torch.log(r + 1e-8).mean()

    def naive_bandwidth_kde(x, h=0.05):
        n, d = x.shape
        d2 = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
        log_norm = math.log(n) + d * math.log(h) + 0.5 * d * math.log(2 * math.pi)
        log_dens = torch.log(torch.exp(-d2 / (2 * h * h)).sum(1)) - log_norm
        return -log_dens.clamp_min(math.log(1e-8)).mean()

    def direct_logdet(x, jitter=1e-6):
        c = torch.cov(x.T) + jitter * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        return 0.5 * torch.linalg.slogdet(c).logabsdet

    def vmf(x):
        return ee.vmf_kde_entropy(F.normalize(x, dim=-1))

    def dirichlet(x):
        return ee.dirichlet_kde_entropy(torch.softmax(x, -1))

    return {
        # name: (ours, reference, reference label, input scale)
        "gaussian_kde": (ee.gaussian_kde_entropy, naive_gaussian_kde, "B×B×d", 1.0),
        "vmf_kde": (vmf, naive_vmf_kde, "B×B×d", 1.0),
        "dirichlet_kde": (dirichlet, naive_dirichlet_kde, "B×B×d", 1.0),
        # h = 0.05 with inputs of std 0.0025 keeps the normalised density above the 1e-8 floor
        "bandwidth_kde": (lambda x: ee.bandwidth_kde_entropy(x, 0.05), naive_bandwidth_kde, "B×B×d", 0.0025),
        "knn": (ee.knn_entropy, naive_knn, "B×B×d", 1.0),
        "knn_full": (lambda x: ee.knn_entropy(x, full=True), lambda x: naive_knn(x, full=True), "B×B×d", 1.0),
        "logdet_exact": (ee.logdet_entropy, direct_logdet, "d×d fp32", 1.0),
        "taylor_logdet_rho2": (lambda x: ee.taylor_logdet_entropy(x, power=2), None, "-", 1.0),
        "taylor_logdet_rho4_official": (
            lambda x: ee.taylor_logdet_entropy(x, power=4, jitter_all_entries=True, official_scaling=True),
            None, "-", 1.0),
    }


# ------------------------------------------------------------------------------------------
# one case (child process)
# ------------------------------------------------------------------------------------------


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def run_case(name: str, impl: str, b: int, d: int, device: str, reps: int, threads: int) -> dict:
    import gc

    import torch

    torch.set_num_threads(threads)
    ours, ref, _, scale = _builders()[name]
    fn = ours if impl == "ours" else ref
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(b, d, generator=g) * scale).to(device).requires_grad_()

    def step():
        x.grad = None
        out = fn(x)
        out.backward()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up (kernels, allocator pools, lazy init)
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        x.grad = None
        gc.collect()
        base = _rss_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
            fh.write("5")
        step()
        peak_mb = (_rss_kb("VmHWM") - base) / 1024
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"time_ms": statistics.median(times) * 1e3, "peak_mb": max(peak_mb, 0.0)}


def _child(args) -> None:
    res = run_case(args.case, args.impl, args.batch, args.case_dim, args.device, args.reps, args.threads)
    print(json.dumps(res))


# ------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------


def _spawn(case: str, impl: str, dim: int, device: str, args) -> dict:
    reps = args.reps if impl == "ours" else max(2, args.reps // 3)
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--impl", impl, "--case-dim", str(dim),
           "--batch", str(args.batch), "--device", device, "--reps", str(reps), "--threads", str(args.threads)]
    # A fixed mmap threshold disables glibc's dynamic threshold, so freed large blocks go
    # back to the OS and the resident-set peak tracks the live tensors of the measured pass.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else f"rc={out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}{unit}"
    if v >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.2f}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=2048, help="single-view dimension (joint = 2 × dim)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads (default 1: on a shared, oversubscribed CPU more threads "
                         "mostly add scheduling stalls; see docs/objectives.md)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--devices", default=None, help="comma list, default: cpu (+ cuda when available)")
    ap.add_argument("--estimators", default=None, help="comma list of estimator names (default: all)")
    # child-process arguments
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    ap.add_argument("--case-dim", type=int, default=2048, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        _child(args)
        return

    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    names = args.estimators.split(",") if args.estimators else list(_builders())
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print("# command: python benchmarks/entropy_estimators.py " + " ".join(sys.argv[1:]))
    print(f"# LDM entropy estimators: forward+backward, B = {args.batch}, single d = {args.dim}, "
          f"joint d = {2 * args.dim}")
    print(f"# torch {torch.__version__}, {args.threads} CPU threads, CPU: {cpu}; "
          f"load average at start: {os.getloadavg()[0]:.1f}")
    print("# time = median of reps (ms); peak = extra peak memory of one fwd+bwd (MiB); "
          "ratio = reference / ours\n")
    builders = _builders()
    header = ("| estimator | mode | device | ours ms | ref ms | time ratio | ours MiB | ref MiB | mem ratio | reference |")
    print(header)
    print("|" + "---|" * 10)
    for device in devices:
        for name in names:
            ref_label = builders[name][2]
            for mode, dim in (("single", args.dim), ("joint", 2 * args.dim)):
                o = _spawn(name, "ours", dim, device, args)
                r = _spawn(name, "ref", dim, device, args) if builders[name][1] is not None else None
                if "error" in o:
                    print(f"| {name} | {mode} | {device} | error: {o['error']} |")
                    continue
                if r is not None and "error" in r:
                    r_t = r_m = None
                    ref_note = f"{ref_label} (failed: {r['error'][:60]})"
                else:
                    r_t = r["time_ms"] if r else None
                    r_m = r["peak_mb"] if r else None
                    ref_note = ref_label
                t_ratio = f"{r_t / o['time_ms']:.1f}×" if r_t else "-"
                m_ratio = f"{r_m / max(o['peak_mb'], 0.01):.0f}×" if r_m else "-"
                print(f"| {name} | {mode} | {device} | {_fmt(o['time_ms'])} | {_fmt(r_t)} | {t_ratio} | "
                      f"{_fmt(o['peak_mb'])} | {_fmt(r_m)} | {m_ratio} | {ref_note} |", flush=True)


if __name__ == "__main__":
    main()
