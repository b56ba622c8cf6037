"""Training on several processes or GPUs: PyTorch DDP, started by ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; multi-node through its rendezvous).

Every process holds the whole recipe, data order and random draws of a one-process run; each takes a contiguous
shard of every batch (:func:`shard`), DDP all-reduces the gradients, and BatchNorm uses the statistics of the whole
batch (``nn.SyncBatchNorm`` on GPUs; on CPUs, where it does not run, :class:`SyncedBatchNorm2d` sums them with
torch.distributed's differentiable all_reduce). So N processes compute the one-process run's steps, to float
rounding. Rank 0 alone writes the run folder.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fundiff.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a batch of ``n`` (sizes differ by at most one; empty when n < world)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))


def ranks_from_env() -> Ranks:
    """The ranks torchrun gave this process (one process when it did not start it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if not 0 <= rank < world:
        raise UserError(f"RANK {rank} is not among WORLD_SIZE {world} processes")
    return Ranks(rank, world, local)


def start(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); each process takes the GPU of its local rank."""
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    # the differentiable all_reduce SyncedBatchNorm2d needs is deprecated for a private successor: keep it quiet
    warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce is deprecated", FutureWarning)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                world_size=ranks.world)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum over processes of a (detached) tensor."""
    value = value.detach().clone()
    dist.all_reduce(value)
    return value


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the whole batch of every process, on any device: y = (x - mean) / sqrt(var + eps) w + b with
    mean and var of all processes' images (sums all-reduced with gradients), running statistics updated with the
    unbiased var. Outside training, or in one process, it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3)), count]))
        c = xf.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean.pow(2)).clamp(min=0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp(min=1))
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return (y * self.weight[None, :, None, None] + self.bias[None, :, None, None]).to(x.dtype)


def sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` with every BatchNorm2d computing whole-batch statistics across processes (same parameters and
    buffers, so checkpoints are unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for name, child in net.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncedBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats, device=child.weight.device)
            synced.weight, synced.bias = child.weight, child.bias
            synced.running_mean, synced.running_var = child.running_mean, child.running_var
            synced.num_batches_tracked = child.num_batches_tracked
            setattr(net, name, synced)
        else:
            sync_batchnorm(child, device)
    return net


def data_parallel(net: nn.Module, device: torch.device) -> nn.Module:
    """DDP over ``net`` (which stays the module that checkpoints and EMA read)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # no buffer broadcast before each forward: every rank's BatchNorm statistics are the whole batch's already
    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}  # the name changed
    return DistributedDataParallel(net, device_ids=ids, **no_sync)

