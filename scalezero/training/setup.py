"""What every entry point does before it trains, evaluates or plays: seed the generators, look
the suite's tasks up (with a suite entry's options and target returns), build the model on
a device. Kept apart from the loop so that reports and the API can use it without importing
the training loop."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import platform
import random
from pathlib import Path

import numpy as np
import torch

from scalezero.config import Config
from scalezero.model import WorldModel
from scalezero.tasks import SuiteLayout, Task, get_task, make_layout
from scalezero.tasks.gymnasium_task import cached_gymnasium_task


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_tasks(config: Config) -> tuple[list[Task], SuiteLayout]:
    """Look up the suite's tasks, apply per-suite target returns, and derive the layout."""
    tasks = []
    for entry in config.tasks:
        if entry.entry_point is not None:
            tasks.append(cached_gymnasium_task(entry))
            continue
        task = get_task(entry.name)
        if entry.kwargs:
            bind = functools.partial
            task = dataclasses.replace(
                task, make_env=bind(task.make_env, **entry.kwargs),
                make_eval_env=bind(task.make_eval_env, **entry.kwargs) if task.make_eval_env else None,
            )  # fmt: skip
        if entry.target_return is not None:
            task = dataclasses.replace(task, spec=dataclasses.replace(task.spec, target_return=entry.target_return))
        tasks.append(task)
    return tasks, make_layout([t.spec for t in tasks])


def pick_device(name: str) -> torch.device:
    """The torch device called ``name``; a clear error when CUDA is asked for and absent."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def machine_info(device: torch.device) -> dict[str, str]:
    """What a run's numbers depend on beyond its config and seed: torch's version, the CPU and
    the instruction set torch's kernels use on it (``AVX2``, ``AVX512``: the same seed gives a
    different run where the kernels differ), and the GPU where one is used."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        pairs = (line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in pairs}
        if "model name" in fields:
            cpu = f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    info = {"torch": torch.__version__, "cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def build_model(config: Config, layout: SuiteLayout, device: torch.device) -> WorldModel:
    return WorldModel(config.resolved_model(), layout).to(device)
