"""Run metrics: TensorBoard events plus CSV/JSON files that reports and tests read."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Writes scalars to TensorBoard and keeps evaluation history in ``eval.csv`` / ``metrics.json``."""

    def __init__(self, run_dir: Path, task_names: list[str]) -> None:
        self.run_dir = run_dir
        self.task_names = task_names
        self.eval_rows: list[dict[str, Any]] = []
        self.train_rows: list[dict[str, Any]] = []
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is a dependency; keep running without it if absent
            self.writer = None

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log named scalars (``task<i>/...`` keys are renamed to the task's name)."""
        if self.writer is None:
            return
        for key, value in values.items():
            if key.startswith("task") and "/" in key:
                head, rest = key.split("/", 1)
                key = f"{self.task_names[int(head[4:])]}/{rest}"
            self.writer.add_scalar(key, value, step)

    def train_point(self, row: dict[str, Any]) -> None:
        self.train_rows.append(row)

    def evaluation(
        self, env_steps: int, updates: int, wall: float, results: dict[int, dict[str, float]], env_steps_total: int | None = None,
        eval_s: float | None = None, worker_s: float | None = None,
    ) -> None:  # fmt: skip
        """Record one evaluation of every task (``env_steps`` per task; ``env_steps_total``
        summed over tasks, which differs from ``env_steps x tasks`` once solved tasks stop;
        ``wall`` the run's seconds so far, ``eval_s`` the seconds the loop spent on this
        evaluation, ``worker_s`` those it took in the background worker, if there)."""
        for tid, r in results.items():
            row = {"env_steps": env_steps, "env_steps_total": env_steps_total, "updates": updates, "wall_s": round(wall, 2), "task": self.task_names[tid], **r}
            if eval_s is not None:
                row["eval_s"] = round(eval_s, 2)
            if worker_s is not None:
                row["eval_worker_s"] = round(worker_s, 2)
            self.eval_rows.append(row)
            self.scalars({f"task{tid}/eval/return": r["return_mean"], f"task{tid}/eval/length": r["length_mean"]}, env_steps)
            if "success_rate" in r:
                self.scalars({f"task{tid}/eval/success_rate": r["success_rate"]}, env_steps)
        with open(self.run_dir / "eval.csv", "w", newline="") as f:
            fields = list(dict.fromkeys(k for row in self.eval_rows for k in row))  # tasks may report different keys
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(self.eval_rows)

    def write_json(self, summary: dict[str, Any]) -> None:
        """Write ``metrics.json``: the summary, evaluation history and training curve."""
        data = {"summary": summary, "eval": self.eval_rows, "train": self.train_rows}
        (self.run_dir / "metrics.json").write_text(json.dumps(data, indent=1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
