"""Single-node data parallelism: launching one process per accelerator, the process group, and
the collectives the stages share (the cross-GPU gather with gradients, broadcasts, gathers).

A stage's `run(config)` is written once for any number of processes: under torchrun (or `launch`)
every process calls it with WORLD_SIZE, RANK and LOCAL_RANK set, and without them it runs alone.
`launch(run, config, nproc)` starts those processes itself through torch's elastic launcher (what
torchrun uses), so a pipeline task that sees n GPUs and `lead <stage> --nproc n` both use every GPU.
The backend is NCCL on GPUs and gloo on CPU (which is how the tests run two processes).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

R = TypeVar("R")


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


def _rank_environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world_size, int(os.environ.get("LOCAL_RANK", str(rank)))


def local_device() -> torch.device:
    """This process's device: cuda:LOCAL_RANK under torchrun (one GPU per rank), the current CUDA
    device in a single process, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    _, world_size, local_rank = _rank_environment()
    return torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())


def setup() -> DistContext:
    """Read torchrun's environment, pick the device and join the process group (if world > 1)."""
    rank, world_size, local_rank = _rank_environment()
    device = local_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
        owns = True
    return DistContext(rank, world_size, local_rank, device, owns)


def _all_gather_cat(local: Tensor) -> Tensor:
    """Equal-shaped pieces [n, ...] of every rank, concatenated in rank order: [world * n, ...]."""
    pieces = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(pieces, local.contiguous())
    return torch.cat(pieces, dim=0)


class _AllGatherSumGrad(torch.autograd.Function):
    """All-gather equal-shaped pieces [n, ...] -> [world * n, ...]; backward sums the gradient of
    the whole gathered tensor over ranks and returns this rank's slice.

    Each rank's loss reads every rank's passages, so passage i's full gradient is the sum over
    ranks of d(loss_r)/d(passage_i). all_reduce (not reduce_scatter) because gloo has no
    reduce_scatter; the tensors are embeddings, small next to the model's gradients.
    """

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:
        ctx.rank, ctx.n = dist.get_rank(), local.shape[0]
        return _all_gather_cat(local)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # SUM
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All-gather `tensor` [n, ...] from every rank along dim 0, differentiably across ranks.

    Ranks may differ in every dimension (passages padded to their own longest length, the last
    batch smaller): each piece is zero-padded to the largest size of every dimension, which for
    the models' attention masks (gathered alongside their vectors) marks the padding as masked,
    and cut back to its own rows after the gather.

    Gradients: every rank's passages receive the gradient of every rank's loss (summed in the
    backward pass), so with each rank's loss a mean over its own queries and DDP averaging the
    parameter gradients, one step equals the single-process step over the union of the ranks'
    batches (equal batch sizes per rank).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    shape = torch.tensor([tensor.shape], device=tensor.device, dtype=torch.long)  # [1, dims]
    shapes_list = _all_gather_cat(shape).tolist()  # one shape per rank
    target = [max(s[d] for s in shapes_list) for d in range(tensor.dim())]

    local = tensor.contiguous()
    if list(local.shape) != target:
        padded = local.new_zeros(target)  # differentiable: autograd routes the slice back to `local`
        padded[tuple(slice(0, n) for n in local.shape)] = local
        local = padded
    # masks and ids carry no gradient
    gathered = _AllGatherSumGrad.apply(local) if local.is_floating_point() else _all_gather_cat(local)
    rows = target[0]
    return torch.cat([gathered[r * rows : r * rows + s[0]] for r, s in enumerate(shapes_list)], dim=0)


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


# ------------------------------------------------------------------------------------- launch
class RankFailedError(RuntimeError):
    """A process of a launched stage failed; the message is that process's own error."""

    def __init__(self, rank: int, message: str):
        super().__init__(f"rank {rank} failed: {message}")
        self.rank = rank


def accelerator_count() -> int:
    """The number of CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun or `launch` set it for this process (1 when none did)."""
    return _rank_environment()[1]


def _run_rank(entry: Callable[[Any], R], config: Any, threads: int, log_level: int) -> R:
    """What each launched process runs; `record` writes its exception to the file the launcher reads."""
    from torch.distributed.elastic.multiprocessing.errors import record

    torch.set_num_threads(threads)
    # A spawned process starts without the launcher's logging set-up: log as it does, rank-tagged.
    rank = os.environ.get("RANK", "?")
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"
    )
    return record(entry)(config)


def _failure_message(failure) -> str:
    """The child's own "ExceptionType: message" where it left one, else what the launcher saw."""
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", message)
    if not failure.error_file_data.get("message") and failure.exitcode > 0:
        # It died before `entry` ran (an import or unpickling error) or exited on its own.
        message = f"exited with code {failure.exitcode} before raising in the stage (its traceback is above)"
    return str(message)


def launch(entry: Callable[[Any], R], config: Any, nproc: int | None = None) -> R:
    """`entry(config)` in `nproc` processes on this node, data parallel; returns rank 0's result.

    nproc: processes to start, one per accelerator (None: as many as torch sees). With 0 or 1,
    or inside a process that torchrun or `launch` already started, `entry(config)` runs here.
    Otherwise torch's elastic launcher (torchrun's machinery: a c10d rendezvous on a free local
    port, no restarts) spawns the ranks with WORLD_SIZE, RANK and LOCAL_RANK set; `entry` must be
    importable by name (a module-level function) and `config` picklable. A failing rank stops the
    others and raises RankFailedError carrying that rank's exception type and message.
    """
    n = accelerator_count() if nproc is None else nproc
    if n <= 1 or launched_world_size() > 1:
        return entry(config)
    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise ValueError(f"nproc={n} processes asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch_config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # torchrun --standalone: a free port on this node
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    # CPU threads per rank: the machine's cores shared out (GPU ranks need few).
    threads = max(1, (os.cpu_count() or 1) // n)
    try:
        results = elastic_launch(launch_config, _run_rank)(entry, config, threads, logging.getLogger().level)
    except ChildFailedError as err:
        # The first rank that raised (it left an error file); ranks the launcher stopped after it
        # only report a signal.
        raised = {rank: f for rank, f in err.failures.items() if f.error_file_data.get("message")}
        rank, failure = min((raised or err.failures).items(), key=lambda rf: (rf[1].timestamp, rf[0]))
        raise RankFailedError(rank, _failure_message(failure)) from None
    return results[0]


def share(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """[first, stop) of rank's contiguous share of `count` items (sizes differ by at most one)."""
    base, extra = divmod(count, world_size)
    first = rank * base + min(rank, extra)
    return first, first + base + (rank < extra)
