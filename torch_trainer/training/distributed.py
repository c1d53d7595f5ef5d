"""torchrun / DistributedDataParallel plumbing: who am I, and the few collectives training needs.

`torchrun --standalone --nproc_per_node=N -m torch_trainer.train ...` sets WORLD_SIZE, RANK and
LOCAL_RANK; plain `python -m torch_trainer.train` sets none of them and stays single-process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist


def setup() -> None:
    """Join the process group torchrun prepared (gloo on CPU, nccl on CUDA); no-op without torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def cleanup() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def process_group() -> Iterator[None]:
    """`setup` on entry, `cleanup` on exit (also when the body raises)."""
    setup()
    try:
        yield
    finally:
        cleanup()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather(value: object) -> list[object]:
    """`value` from every rank, in rank order (a list of one when single-process). Every rank must call it."""
    if not dist.is_initialized():
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def sum_across(*values: float) -> list[float]:
    """Sum each value over all ranks (identity when single-process)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=f"cuda:{local_rank()}" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()
