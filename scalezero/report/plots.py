"""The report's figures (matplotlib, headless). Each function writes one PNG and returns its
path, or None when the runs hold no data for it (e.g. no MoE layers, no conflict diagnostic)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scalezero.report.runs import RunGroup

EXPERT_KEY = re.compile(r"^task(\d+)/moe/layer(\d+)/expert(\d+)$")


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def eval_curve(group: RunGroup, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env steps, mean return, band) of one task. Several seeds: mean and standard error over
    seeds at the steps every seed evaluated; one seed: the standard error over its episodes."""
    per_run = []
    for run in group.runs:
        rows = [r for r in run.metrics["eval"] if r["task"] == task]
        per_run.append({r["env_steps"]: r for r in rows})
    steps = sorted(set.intersection(*(set(d) for d in per_run))) if per_run else []
    if not steps:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    values = np.array([[d[s]["return_mean"] for s in steps] for d in per_run])
    if len(per_run) > 1:
        band = values.std(axis=0, ddof=1) / math.sqrt(len(per_run))
    else:
        band = np.array([per_run[0][s]["return_std"] / math.sqrt(max(1.0, per_run[0][s]["episodes"])) for s in steps])
    return np.array(steps), values.mean(axis=0), band


def learning_curves(groups: list[RunGroup], random_returns: dict[str, float | None], path: Path, targets: dict[str, float] | None = None) -> Path:
    """One panel per task, one line per group (band: ± s.e. over seeds, or over episodes),
    with the random policy's return and the task's target return as dashed lines."""
    tasks = list(dict.fromkeys(t for g in groups for t in g.task_names))
    cols = min(len(tasks), 3)
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for g in groups:
            if task not in g.task_names:
                continue
            x, y, band = eval_curve(g, task)
            seeds = f"{len(g.runs)} seeds" if len(g.runs) > 1 else "1 seed"
            ax.plot(x, y, marker="o", markersize=3, label=f"{g.label} ({seeds})")
            ax.fill_between(x, y - band, y + band, alpha=0.2)
        if random_returns.get(task) is not None:
            ax.axhline(random_returns[task], color="grey", linestyle="--", label="random policy")
        if targets and targets.get(task) is not None:
            ax.axhline(targets[task], color="black", linestyle=":", linewidth=1, label="target return")
        ax.set_title(task, fontsize=11)
        ax.set_xlabel("env steps (per task)", fontsize=10)
        ax.set_ylabel("greedy eval return", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def _train_series(group: RunGroup, key: str, x_key: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """Mean over the group's runs of a logged training scalar, on the first run's x grid."""
    series = []
    for run in group.runs:
        pts = [(r[x_key], r[key]) for r in run.metrics["train"] if key in r and not _isnan(r[key])]
        if pts:
            series.append(np.array(pts, dtype=np.float64))
    if not series:
        return np.zeros(0), np.zeros(0)
    x = series[0][:, 0]
    ys = [np.interp(x, s[:, 0], s[:, 1]) for s in series]
    return x, np.mean(ys, axis=0)


def _isnan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)


def conflict_curves(groups: list[RunGroup], path: Path) -> Path | None:
    """Mean pairwise cosine and fraction of conflicting task pairs over training."""
    keys = sorted({k for g in groups for run in g.runs for r in run.metrics["train"] for k in r if k.startswith("conflict/")})
    if not keys:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, stat, title in ((axes[0], "mean_cosine", "mean pairwise cosine"), (axes[1], "fraction_negative", "fraction of conflicting pairs")):
        for g in groups:
            for key in (k for k in keys if k.endswith(stat)):
                x, y = _train_series(g, key)
                if len(x):
                    part = key.split("/")[1]
                    ax.plot(x, _smooth(y), label=f"{g.label}: {part}")
        ax.set_title(f"task gradients: {title}")
        ax.set_xlabel("env steps (per task)")
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def _smooth(y: np.ndarray, width: int = 5) -> np.ndarray:
    if len(y) < width:
        return y
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width // 2, y[0]), y, np.full(width - 1 - width // 2, y[-1])])
    return np.convolve(padded, kernel, mode="valid")


def expert_load(group: RunGroup) -> tuple[np.ndarray, list[str]] | None:
    """``[tasks, layers * experts]`` fraction of each task's routed tokens per expert, averaged
    over the second half of training and over the group's seeds; None without MoE logs."""
    acc: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for run in group.runs:
        rows = [r for r in run.metrics["train"] if any(EXPERT_KEY.match(k) for k in r)]
        for r in rows[len(rows) // 2 :]:
            for k, v in r.items():
                m = EXPERT_KEY.match(k)
                if m:
                    acc[tuple(int(x) for x in m.groups())].append(v)  # type: ignore[arg-type]
    if not acc:
        return None
    tasks = 1 + max(k[0] for k in acc)
    layers = 1 + max(k[1] for k in acc)
    experts = 1 + max(k[2] for k in acc)
    grid = np.zeros((tasks, layers * experts))
    for (t, layer, e), values in acc.items():
        grid[t, layer * experts + e] = float(np.mean(values))
    return grid, [f"L{layer}E{e}" for layer in range(layers) for e in range(experts)]


def expert_heatmaps(groups: list[RunGroup], path: Path) -> Path | None:
    """Heatmap per MoE group: rows are tasks, columns layer/expert, colour the token share."""
    loads = [(g, expert_load(g)) for g in groups]
    loads = [(g, load) for g, load in loads if load is not None]
    if not loads:
        return None
    fig, axes = plt.subplots(1, len(loads), figsize=(1.2 + 0.55 * loads[0][1][0].shape[1] * len(loads) + 2.5, 0.5 + 0.45 * len(loads[0][0].task_names) + 1.2), squeeze=False)
    for ax, (g, (grid, cols)) in zip(axes.flat, loads):
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(g.task_names)), g.task_names, fontsize=7)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
        ax.set_title(f"{g.label}: token share per expert", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


def loss_curves(groups: list[RunGroup], path: Path) -> Path | None:
    """Total and component losses against learner updates."""
    keys = ["loss/total", "loss/value", "loss/policy", "loss/reward", "loss/latent"]
    if not any(k in r for g in groups for run in g.runs for r in run.metrics["train"] for k in keys):
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        for g in groups:
            x, y = _train_series(g, key, x_key="updates")
            if len(x):
                ax.plot(x, y, label=g.label)
        name = key.split("/")[1]
        ax.set_title(f"{name} loss", fontsize=11)
        ax.set_xlabel("learner updates", fontsize=10)
        ax.set_ylabel(f"{name} loss (unweighted)" if name != "total" else "total loss (weighted sum)", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    return _save(fig, path)


def dps_timeline(groups: list[RunGroup], path: Path) -> Path | None:
    """Dynamic Parameter Scaling: stage and number of solved tasks against env steps."""
    if not any("dps/stage" in r for g in groups for run in g.runs for r in run.metrics["train"]):
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    for g in groups:
        for i, run in enumerate(g.runs):
            pts = [(r["env_steps"], r["dps/stage"], r.get("dps/solved", float("nan"))) for r in run.metrics["train"] if "dps/stage" in r]
            if not pts:
                continue
            x, stage, solved = (np.array(v) for v in zip(*pts))
            seed = run.config.train.seed
            ax.step(x, stage, where="post", label=f"{g.label} seed {seed}: stage")
            ax.step(x, solved, where="post", linestyle=":", label=f"{g.label} seed {seed}: solved tasks")
    ax.set_xlabel("env steps (per task)")
    ax.set_ylabel("stage / solved tasks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def throughput(groups: list[RunGroup], path: Path) -> Path:
    """Env steps per task against wall-clock time, from the evaluation timestamps."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for g in groups:
        for run in g.runs:
            pts = sorted({(r["wall_s"], r["env_steps"]) for r in run.metrics["eval"]})
            if pts:
                w, s = zip(*[(0.0, 0)] + pts)
                ax.plot(np.array(w) / 60, s, marker="o", markersize=3, label=f"{g.label} seed {run.config.train.seed}")
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("env steps per task")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
