"""The tiny two-task run that the tests of the loop's machinery share (resume, acting and
learning at once, evaluation in the background): seconds to train, every part of the loop
exercised; and how to read its records with time, the one thing a repeat may change, left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY = {
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2, "capacity_per_task": 400},
    "train": {"env_steps": 240, "num_envs": 4, "batch_size": 4, "learning_starts": 40, "replay_ratio": 0.5, "eval_every": 240,
              "eval_episodes": 2, "eval_max_steps": 20, "checkpoint_every": 40, "keep_checkpoints": 2},
}  # fmt: skip
"""A suite (as YAML would load it) of two small tasks of two kinds, a checkpoint every 40 steps."""

EXACT_TRAIN = {"replay_ratio": 1.0, "keep_checkpoints": 100, "torch_threads": 1}
"""What a run compared bit for bit with another needs: one update per step, every checkpoint
kept, one thread (the same kernels every time)."""


def filled_learner(config, collect_steps: int):
    """A model (torch seed 0), a collector that stepped every task ``collect_steps`` times with
    it, and a learner on the CPU: what a test of one learner update starts from."""
    import torch

    from scalezero.training.collector import Collector
    from scalezero.training.learner import Learner
    from scalezero.training.loop import build_model, resolve_tasks

    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(collect_steps):
        collector.step(model, list(range(len(tasks))))
    return model, collector, Learner(model, layout, config, torch.device("cpu"))


def tiny(**train) -> dict:
    """:data:`TINY` with these ``train`` fields changed."""
    return {**TINY, "train": {**TINY["train"], **train}}


def timeless(rows: list[dict]) -> list[dict]:
    """Metrics rows without what measures time."""
    return [{k: v for k, v in row.items() if not (k.endswith("_s") or k.startswith("time"))} for row in rows]


def history(run: Path) -> tuple[list[dict], list[dict], dict]:
    """A finished run's training rows and evaluation rows (timeless) and its summary."""
    data = json.loads((run / "metrics.json").read_text())
    return timeless(data["train"]), timeless(data["eval"]), data["summary"]


def resume_copy(straight: Path, checkpoint: str, into: Path) -> Path:
    """A run directory as a kill right after (or any time after) ``checkpoint`` leaves it."""
    (into / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "config.yaml", into / "config.yaml")
    shutil.copytree(straight / "checkpoints" / checkpoint, into / "checkpoints" / checkpoint)
    return into
