"""Single-node data parallelism (torchrun/DDP): process group set-up and the cross-GPU gather.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them training runs in one process. The
backend is NCCL on GPUs and gloo on CPU (which is how the tests run two processes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class DistContext:
    """Where this process sits: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # whether `setup` created the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup() -> DistContext:
    """Read torchrun's environment, pick the device and join the process group (if world > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
        owns = True
    return DistContext(rank, world_size, local_rank, device, owns)


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All-gather `tensor` [n, ...] from every rank along dim 0; the local slot keeps its gradient.

    Ranks may differ in every dimension but the first (passages padded to their own longest
    length): each piece is zero-padded to the largest size of every other dimension, which for
    the models' attention masks (gathered alongside their vectors) marks the padding as masked.
    Other ranks' pieces carry no gradient; each rank back-propagates through its own passages
    only, and DDP averages the gradients.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world, rank = dist.get_world_size(), dist.get_rank()
    shape = torch.tensor(tensor.shape, device=tensor.device, dtype=torch.long)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    shapes_list = [s.tolist() for s in shapes]
    target = [max(s[d] for s in shapes_list) for d in range(tensor.dim())]

    def pad(t: Tensor) -> Tensor:
        if list(t.shape) == target:
            return t
        out = t.new_zeros(target)  # differentiable: autograd routes the slice back to `t`
        out[tuple(slice(0, n) for n in t.shape)] = t
        return out

    local = pad(tensor.contiguous())
    pieces = [torch.empty(target, dtype=tensor.dtype, device=tensor.device) for _ in range(world)]
    dist.all_gather(pieces, local.detach())
    pieces[rank] = local
    return torch.cat([p[: s[0]] for p, s in zip(pieces, shapes_list)], dim=0)


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean of `tensor` over ranks (a copy; no gradient)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor.detach().clone()
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def broadcast_object(obj, src: int = 0):
    """`obj` from rank `src` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
