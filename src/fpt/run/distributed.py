"""Data-parallel training through PyTorch's own stack: `torchrun ... -m fpt train ...`.

torchrun (or Accelerate's launcher, which calls it) starts one process per device and
sets RANK, LOCAL_RANK and WORLD_SIZE. fpt then:

- builds the same task and model on every rank (same seeds, so the same initialisation;
  DistributedDataParallel also broadcasts rank 0's trained parameters);
- gives rank r the r-th equal slice of each global batch, so N processes train on exactly
  the batches one process would, and DDP's gradient average is the global batch's gradient;
- evaluates each split sharded across ranks and sums the metric counts (all_reduce);
- writes checkpoints, metrics, logs and result.json from rank 0 only.

On GPUs the backend is NCCL, one device per process (cuda:LOCAL_RANK); on CPU it is gloo.

`--parallel fsdp` is for backbones that do not fit one device: PyTorch's FSDP2
(`fully_shard`) splits every frozen weight across the ranks and gathers a block's
weights only while that block runs. The trained parameters (well under 1% of the
model) are left whole on every rank and their gradients averaged with one all_reduce,
so checkpoints and the optimiser see ordinary tensors exactly as in a single process.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from fpt.errors import FptError
from fpt.metrics import Metrics

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """What the launcher's environment says; a plain `fpt train` is a world of one."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise FptError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    return World(rank=rank, size=size, local_rank=local_rank)


def init(device_name: str) -> tuple[World, str]:
    """Join the process group when launched with several processes; returns the world and the
    device this process should use (cuda:LOCAL_RANK, or cpu)."""
    world = launched_world()
    if not world.parallel:
        return world, device_name
    cuda = device_name.startswith("cuda") or device_name == "auto" and torch.cuda.is_available()
    if cuda:
        if torch.cuda.device_count() <= world.local_rank:
            raise FptError(f"--device {device_name} under torchrun: process {world.local_rank} needs GPU "
                           f"{world.local_rank} but {torch.cuda.device_count()} are visible; start at most that "
                           "many processes per node (--nproc-per-node), or use --device cpu")
        device_name = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world, device_name if cuda else "cpu"


def main_first(world: World, device: torch.device, on_main: Callable[[], T],
               on_others: Callable[[], T] | None = None) -> T:
    """Run `on_main` on rank 0; once it has succeeded, `on_others` (default: the same) on the
    other ranks. Rank 0 alone downloads, unpacks or locks; the others then find it done. If rank
    0 fails, every rank raises, so no rank is left waiting for the others in a collective."""
    if not world.parallel:
        return on_main()
    result, error = None, None
    if world.is_main:
        try:
            result = on_main()
        except FptError as err:
            error = err
    if any_across(error is not None, world, device):
        raise error or FptError("rank 0 stopped; its message says why")
    return result if world.is_main else (on_others or on_main)()  # type: ignore[return-value]


def data_parallel(model: nn.Module) -> nn.Module:
    """DistributedDataParallel over the trained parameters; buffers are constant, never re-sent."""
    from torch.nn.parallel import DistributedDataParallel

    keyword = ("forward_sync_buffers" if "forward_sync_buffers" in
               inspect.signature(DistributedDataParallel.__init__).parameters else "broadcast_buffers")
    return DistributedDataParallel(model, **{keyword: False})


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(values: torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sum over ranks (a copy); the identity in a world of one."""
    if not world.parallel:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def any_across(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank if it is true on any rank (all must take the same branch)."""
    if not world.parallel:
        return flag
    return bool(sum_across(torch.tensor([float(flag)], device=device), world).item() > 0)


def barrier(world: World) -> None:
    if world.parallel:
        dist.barrier()


def average_gradients(params: list[nn.Parameter], world: World) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one flat all_reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not world.parallel or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    for grad, mean in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(mean.view_as(grad))


def shard_frozen_weights(model: nn.Module, device: torch.device) -> None:
    """FSDP2 over each transformer block, then the whole model; trained parameters stay whole.

    The model may still be on the CPU: FSDP moves the shards to the device, this moves the rest."""
    try:
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor
    except ImportError:
        raise FptError(f"--parallel fsdp needs PyTorch's FSDP2 (torch 2.6 or newer; this is {torch.__version__}); "
                       "upgrade torch or use --parallel ddp") from None

    trained = {p for p in model.parameters() if p.requires_grad}
    for block in transformer_blocks(model):
        fully_shard(block, ignored_params=trained)
    fully_shard(model, ignored_params=trained)
    with torch.no_grad():
        for param in model.parameters():
            if not isinstance(param, DTensor):
                param.data = param.data.to(device)
        for module in model.modules():
            for name, buffer in module.named_buffers(recurse=False):
                setattr(module, name, buffer.to(device))


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The layers of the model's largest ModuleList (GPT-2's h, BERT's encoder.layer, ...)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return []
    largest = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
    return list(largest)


def merge_metrics(metrics: Metrics, world: World, device: torch.device, n_targets: int) -> Metrics:
    """Every rank's metrics of its shard, merged in rank order into the metrics of the whole
    pass (the same on every rank). Each rank's counts travel in its own row of one all_reduce."""
    if not world.parallel:
        return metrics
    mine = metrics.state(n_targets)
    rows = torch.zeros(world.size, len(mine), dtype=torch.float64)
    rows[world.rank] = mine
    rows = sum_across(rows.to(device), world).cpu()
    merged = Metrics(metrics.objective)
    for row in rows:
        merged.absorb(Metrics.from_state(metrics.objective, row))
    return merged
