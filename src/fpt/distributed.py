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

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fpt.errors import FptError


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
    device this process should use."""
    world = launched_world()
    if not world.parallel:
        return world, device_name
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available() or device_name.startswith("cuda")
    if cuda:
        device_name = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world, device_name if cuda else "cpu"


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_rows(n: int, world: World) -> slice:
    """Rank's equal slice of n rows (n must divide evenly: checked when the run starts)."""
    per_rank = n // world.size
    return slice(world.rank * per_rank, (world.rank + 1) * per_rank)


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
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

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
