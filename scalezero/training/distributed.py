"""Data-parallel training over tasks with torch.distributed (gloo on CPU, NCCL on GPU).

Tasks are split into contiguous blocks, one per rank; each rank collects and samples only its
own tasks and holds a full replica of the model. After every backward pass the gradients are
combined so that every rank applies the same step, equal to the single-process step over all
tasks: each rank's gradient (the mean over its training tasks) is weighted by its share of the
training tasks and summed. A parameter no task of a rank touched (an expert none of its tokens
reached) simply contributes zero from that rank. A rank whose tasks are all solved still joins
every update with zero gradients, so all ranks run the same number of collective calls.
Evaluation results are summed into one table, so every rank sees every task's return and the
DPS controller takes the same decisions everywhere.

``scalezero train --nproc N`` starts N local processes through ``torch.distributed.run``; for
several machines run ``torchrun --nnodes M --nproc_per_node N --rdzv_endpoint HOST:PORT -m
scalezero.cli train ...`` on each machine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The place torchrun gives this process (``RANK``, ``WORLD_SIZE``), read before joining the
    group, so that a run can check its config and find its files first."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world) if world > 1 else DistInfo()


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (single process otherwise)."""
    if not env_info().enabled:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def partition(num_tasks: int, world: int) -> list[list[int]]:
    """Contiguous blocks of task ids, sizes differing by at most one."""
    if num_tasks < world:
        raise ValueError(f"{world} processes need at least {world} tasks, the suite has {num_tasks}")
    base, extra = divmod(num_tasks, world)
    blocks, start = [], 0
    for r in range(world):
        size = base + (1 if r < extra else 0)
        blocks.append(list(range(start, start + size)))
        start += size
    return blocks


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers equal to rank 0's."""
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def combine_gradients(module: torch.nn.Module, weight: float) -> None:
    """Replace each gradient by the sum over ranks of ``weight * gradient`` (missing: zeros)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_true(flag: bool, device: torch.device) -> bool:
    return all_sum([1.0 if flag else 0.0], device)[0] > 0


def all_true(flag: bool, device: torch.device) -> bool:
    return all_sum([1.0 if flag else 0.0], device)[0] == dist.get_world_size()


EVAL_KEYS = ("return_mean", "return_std", "length_mean", "episodes", "success_rate")


def gather_evaluation(local: dict[int, dict[str, float]], num_tasks: int, device: torch.device) -> dict[int, dict[str, float]]:
    """Every rank's evaluation of its own tasks -> the whole table, on every rank (a key a task
    does not report, such as ``success_rate``, travels as NaN and is left out again)."""
    table = torch.zeros(num_tasks, len(EVAL_KEYS), dtype=torch.float64, device=device)
    for t, r in local.items():
        table[t] = torch.tensor([r.get(k, float("nan")) for k in EVAL_KEYS], dtype=torch.float64)
    dist.all_reduce(table)
    return {t: {k: v for k, v in zip(EVAL_KEYS, table[t].tolist()) if not math.isnan(v)} for t in range(num_tasks)}


class Sync:
    """The collective operations the loop needs; in a single process each one is the identity,
    so the loop reads the same with or without torchrun."""

    def __init__(self, info: DistInfo, device: torch.device) -> None:
        self.info = info
        self.device = device

    def any(self, flag: bool) -> bool:
        return any_true(flag, self.device) if self.info.enabled else flag

    def all(self, flag: bool) -> bool:
        return all_true(flag, self.device) if self.info.enabled else flag

    def sum(self, values: list[float]) -> list[float]:
        return all_sum(values, self.device) if self.info.enabled else list(values)

    def evaluation(self, local: dict[int, dict[str, float]], num_tasks: int) -> dict[int, dict[str, float]]:
        return gather_evaluation(local, num_tasks, self.device) if self.info.enabled else local
