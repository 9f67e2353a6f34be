"""What a person sees while training: a start summary, a live progress bar, an end summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from scalezero.config import Config
from scalezero.tasks import SuiteLayout

if TYPE_CHECKING:
    from scalezero.training.loop import RunResult


def _short(name: str) -> str:
    return name.removeprefix("minatar-")


class TrainingConsole:
    """Rich output for one run; silent when ``enabled`` is False (tests, benchmarks)."""

    def __init__(self, config: Config, layout: SuiteLayout, model: torch.nn.Module, device: torch.device, enabled: bool = True) -> None:
        self.config, self.layout, self.model, self.device = config, layout, model, device
        self.enabled = enabled
        self.console = Console()
        self.progress: Progress | None = None
        self.live: Live | None = None
        self.status = Text("collecting...")
        self.task_id = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not self.enabled:
            return
        table = Table(title=f"scalezero: suite '{self.config.suite}' on {self.device}", title_justify="left")
        for col in ("task", "observation", "actions", "target return"):
            table.add_column(col)
        for s in self.layout.specs:
            if s.continuous:
                actions = f"continuous, {s.action_dim} of {self.layout.action_dim} dims"
            else:
                count = len(s.legal_actions) if s.legal_actions is not None else s.num_actions
                actions = f"{count} of {self.layout.num_actions}"
            table.add_row(s.name, f"{s.obs_kind} {tuple(s.obs_shape)}", actions, f"{s.target_return:g}")
        self.console.print(table)
        parts = self.model.parameter_breakdown()
        detail = ", ".join(f"{k} {v:,}" for k, v in parts.items() if k != "total" and v)
        t, m, sc = self.config.train, self.config.model, self.config.search
        moe = f", MoE {m.moe_num_experts} experts top-{m.moe_top_k}" if m.moe_num_experts else ""
        self.console.print(
            f"model: {parts['total']:,} parameters ({detail}) | width {m.embed_dim}, layers {m.num_layers}, heads {m.num_heads}{moe} | "
            f"search: {sc.algorithm}, {sc.num_simulations} simulations"
            f"{f' over {sc.num_samples} sampled actions per node' if self.layout.continuous else ''} | "
            f"budget: {t.env_steps:,} env steps per task, {t.num_envs} envs per task, replay ratio {t.replay_ratio}"
        )
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("env steps"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("[cyan]{task.fields[activity]}"),
            console=self.console,
        )
        total = self.config.train.env_steps * self.layout.num_tasks
        self.task_id = self.progress.add_task("train", total=total, activity="")
        self.live = Live(Group(self.progress, self.status), console=self.console, refresh_per_second=4)
        self.live.start()

    def update(self, env_steps: int, updates: int, latest_eval: dict, recent: dict, metrics: dict, dps: str = "") -> None:
        if self.progress is None:
            return
        evals = "  ".join(f"{_short(self.layout.specs[t].name)} {r['return_mean']:.1f}" for t, r in latest_eval.items())
        loss = f"  loss {metrics['loss/total']:.3f}" if "loss/total" in metrics else ""
        collect = "  ".join(
            f"{_short(self.layout.specs[t].name)} {sum(r) / len(r):.1f}" for t, r in recent.items() if r
        )
        self.status.plain = (
            f"updates {updates:,}{loss}{dps}\n"
            f"collect (mean of last 20 episodes): {collect or '-'}\n"
            f"latest eval (greedy): {evals or '-'}"
        )
        self.progress.update(self.task_id, completed=env_steps)

    def activity(self, text: str) -> None:
        """What the run is doing besides stepping (``"evaluating: 12/64 episodes"``, ``"writing
        checkpoint"``), shown beside the bar while it lasts; ``""`` clears it."""
        if self.progress is not None:
            self.progress.update(self.task_id, activity=text)

    def evaluation_progress(self, finished: int, total: int) -> None:
        """``evaluate``'s ``on_episode`` callback: episodes counted so far."""
        self.activity(f"evaluating: {finished}/{total} episodes")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print()

    def finish(self, result: RunResult, layout: SuiteLayout) -> None:
        if not self.enabled:
            return
        table = Table(title="final evaluation (greedy search)", title_justify="left")
        for col in ("task", "return (mean ± std)", "random policy", "target"):
            table.add_column(col)
        for spec in layout.specs:
            r = result.final_eval.get(spec.name, {})
            random_return = "-" if spec.random_return is None else f"{spec.random_return:g}"
            table.add_row(spec.name, f"{r.get('return_mean', float('nan')):.2f} ± {r.get('return_std', float('nan')):.2f}", random_return, f"{spec.target_return:g}")
        self.console.print(table)
        self.console.print(
            f"{result.env_steps:,} env steps, {result.updates:,} updates in {result.wall_s:.0f} s "
            f"({result.env_steps / max(result.wall_s, 1e-9):.0f} env steps/s)"
        )
