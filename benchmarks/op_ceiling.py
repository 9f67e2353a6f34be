"""How close a piece of work runs to the machine's limit for its own shapes.

``record(fn)`` runs ``fn`` once under a dispatch mode that notes every call of the
compute-heavy ATen ops (matrix products, convolutions and their backward passes, fused
attention) with the shapes, strides and dtypes of its arguments. ``replay`` then times each
distinct call alone, on fresh tensors of those exact layouts, and counts its FLOPs with
PyTorch's own counter. The sum of those isolated times is what the work would take if every
heavy op ran at micro-benchmark speed and nothing else cost anything: its ceiling.

    calls = record(lambda: learner.update(batch))
    ceiling = replay(calls)   # -> Ceiling(flops, seconds, ...)
    achieved = ceiling.flops / measured_seconds_of_one_update
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
HEAVY = {
    aten.mm,
    aten.addmm,
    aten.bmm,
    aten.baddbmm,
    aten.convolution,
    aten.convolution_backward,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_flash_attention_backward,
}


@dataclass(frozen=True)
class TensorSpec:
    """The layout of one tensor argument: enough to make a fresh tensor the op treats alike."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: str

    def make(self) -> torch.Tensor:
        # fill the storage, not the view: a broadcast argument (stride 0) shares elements
        size = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else 0
        storage = torch.empty(size, dtype=self.dtype, device=self.device)
        storage.normal_() if self.dtype.is_floating_point else storage.zero_()
        return storage.as_strided(self.shape, self.stride)


def _spec(x: Any) -> Any:
    """A hashable stand-in for an op argument: tensors become their layout, lists tuples."""
    if isinstance(x, torch.Tensor):
        return TensorSpec(tuple(x.shape), tuple(x.stride()), x.dtype, str(x.device))
    if isinstance(x, (list, tuple)):
        return tuple(_spec(v) for v in x)
    return x


def _make(x: Any) -> Any:
    if isinstance(x, TensorSpec):
        return x.make()
    if isinstance(x, tuple):
        return [_make(v) for v in x]
    return x


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in HEAVY:
            key = (func, _spec(args), tuple(sorted((k, _spec(v)) for k, v in kwargs.items())))
            self.calls[key] += 1
        return func(*args, **kwargs)


def record(fn: Callable[[], Any]) -> Counter:
    """Run ``fn`` once; return ``{(op, argument layouts, kwargs): calls}`` of its heavy ops."""
    recorder = _Recorder()
    with recorder:
        fn()
    return recorder.calls


CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: 1.0,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: 2.5,
}
"""Fused CPU attention, which PyTorch's FLOP counter does not know: forward ``q k^T`` and
``p v`` are ``4 B H L S E`` FLOPs; backward recomputes ``q k^T`` and takes four more products
of the same size, 2.5 times the forward."""


def _attention_flops(func: Any, args: list) -> float:
    q, k = args[0], args[1]  # [B, H, L, E] and [B, H, S, E] (backward: grad_out first, then q, k)
    if func.overloadpacket is aten._scaled_dot_product_flash_attention_for_cpu_backward:
        q, k = args[1], args[2]
    b, h, length, e = q.shape
    return CPU_ATTENTION[func.overloadpacket] * 4.0 * b * h * length * k.shape[-2] * e


@dataclass(frozen=True)
class Ceiling:
    """The heavy ops of one recorded run: their FLOPs and their isolated time."""

    flops: float
    seconds: float
    distinct_calls: int
    calls: int
    by_op: dict[str, dict[str, float]]

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds


def replay(calls: Counter, repeats: int = 5, min_seconds: float = 0.002) -> Ceiling:
    """Time every recorded call alone (median of ``repeats``, each looping until it lasts
    ``min_seconds``) on fresh tensors of the recorded layouts; FLOPs from PyTorch's counter."""
    total_flops = total_s = 0.0
    by_op: dict[str, dict[str, float]] = {}
    for (func, arg_specs, kwarg_items), count in calls.items():
        args = _make(arg_specs)
        kwargs = {k: _make(v) for k, v in kwarg_items}
        counter = FlopCounterMode(display=False)
        with counter:
            func(*args, **kwargs)
        flops = float(counter.get_total_flops())
        if func.overloadpacket in CPU_ATTENTION:
            flops = _attention_flops(func, args)
        loops = 1
        while True:
            start = time.perf_counter()
            for _ in range(loops):
                func(*args, **kwargs)
            if time.perf_counter() - start >= min_seconds or loops >= 1 << 14:
                break
            loops *= 2
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(loops):
                func(*args, **kwargs)
            times.append((time.perf_counter() - start) / loops)
        seconds = statistics.median(times)
        total_flops += flops * count
        total_s += seconds * count
        row = by_op.setdefault(str(func.overloadpacket).removeprefix("aten."), {"calls": 0, "flops": 0.0, "seconds": 0.0})
        row["calls"] += count
        row["flops"] += flops * count
        row["seconds"] += seconds * count
    return Ceiling(total_flops, total_s, len(calls), sum(calls.values()), by_op)
