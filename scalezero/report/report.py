"""Turn a run directory's metrics into ``report.md`` and ``learning_curves.png``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scalezero.config import load_config  # noqa: E402


def _curves(eval_rows: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    curves: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for row in eval_rows:
        sem = row["return_std"] / max(1.0, float(row["episodes"])) ** 0.5
        curves[row["task"]].append((row["env_steps"], row["return_mean"], sem))
    return curves


def plot_learning_curves(eval_rows: list[dict], random_returns: dict[str, float | None], path: Path) -> Path:
    """One panel per task: evaluation return against env steps (mean, band = ± standard error over episodes)."""
    curves = _curves(eval_rows)
    n = max(1, len(curves))
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (task, points) in zip(axes.flat, curves.items()):
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        sd = [p[2] for p in points]
        ax.plot(xs, ys, marker="o", label="agent, greedy search (± s.e.m.)")
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        if random_returns.get(task) is not None:
            ax.axhline(random_returns[task], color="grey", linestyle="--", label="random policy")
        ax.set_title(task)
        ax.set_xlabel("env steps (per task)")
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.md`` (+ the PNG it embeds) for a finished run; returns the report path."""
    from scalezero.train.loop import resolve_tasks

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = load_config(run_dir / "config.yaml")
    tasks, _ = resolve_tasks(config)
    random_returns = {t.spec.name: t.spec.random_return for t in tasks}
    targets = {t.spec.name: t.spec.target_return for t in tasks}
    summary = metrics["summary"]
    plot = plot_learning_curves(metrics["eval"], random_returns, run_dir / "learning_curves.png")
    lines = [
        f"# scalezero run: suite `{summary['suite']}`",
        "",
        f"- env steps: {summary['env_steps_total']:,} ({', '.join(f'{k}: {v:,}' for k, v in summary['env_steps_per_task'].items())})",
        f"- learner updates: {summary['updates']:,}; wall time: {summary['wall_s']:.0f} s "
        f"({summary['env_steps_per_s']:.0f} env steps/s, {summary['updates_per_s']:.2f} updates/s)",
        f"- parameters: {summary['parameters']:,}; config hash: `{summary['config_hash']}`",
        "",
        "## Final evaluation (greedy search)",
        "",
        "| task | return (mean ± std) | episodes | random policy | target |",
        "|---|---|---|---|---|",
    ]
    for name, r in summary["final_eval"].items():
        rnd = random_returns.get(name)
        lines.append(
            f"| {name} | {r.get('return_mean', float('nan')):.2f} ± {r.get('return_std', float('nan')):.2f} | "
            f"{int(r.get('episodes', 0))} | {'-' if rnd is None else f'{rnd:g}'} | {targets[name]:g} |"
        )
    lines += ["", "## Learning curves", "", f"![learning curves]({plot.name})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
