"""Multi-process (torchrun / DDP) helpers of the image experiments: embeddings gathered *with gradient*
so that every entropy estimate runs over the global batch, as the paper's 2-GPU ImageNet-100 runs did
(solo-learn's ``gather``; images.md §3).

Launch: ``torchrun --nproc_per_node=N -m ldm images-ddp ...`` (docs/images.md). On one process every
function here is the identity.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GatherLayer", "gather_with_grad", "world", "init_from_env"]


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GatherLayer(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks (all_reduce) and returns this
    rank's slice — the gradient of the global loss with respect to the local embeddings."""

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:  # noqa: D102
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:  # noqa: D102
        g = torch.stack(grads)
        dist.all_reduce(g)
        return g[dist.get_rank()]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B_local, ...) of every rank along dim 0, differentiably."""
    _, size = world()
    if size == 1:
        return x
    return torch.cat(GatherLayer.apply(x), 0)


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Initialise the process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT);
    returns (rank, world size); (0, 1) when not launched by torchrun."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available() and local >= torch.cuda.device_count():
        raise RuntimeError(f"torchrun started local rank {local}, but this node has {torch.cuda.device_count()} "
                           "visible GPU(s): use --nproc_per_node at most the GPU count (one process per GPU)")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return dist.get_rank(), dist.get_world_size()
