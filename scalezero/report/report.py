"""Reports of one or several runs: ``report.html`` (self-contained) and ``report.md`` + PNGs.

Several runs of the same setting (differing only in seed) are drawn as one line with a band
over seeds; runs of different settings are compared side by side in every table and plot.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scalezero.report import plots
from scalezero.report.render import Image, Section, Table, to_html, to_markdown
from scalezero.report.runs import RunData, RunGroup, group_runs, load_run


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _normalised(value: float, low: float | None, high: float | None) -> float | None:
    if low is None or high is None or high == low:
        return None
    return (value - low) / (high - low)


def _final_values(group: RunGroup, task: str, key: str = "return_mean") -> list[float]:
    out = []
    for run in group.runs:
        r = run.summary["final_eval"].get(task, {})
        if key in r:
            out.append(r[key])
    return out


def _overview(groups: list[RunGroup]) -> Section:
    rows = []
    for g in groups:
        for run in g.runs:
            s = run.summary
            parts = s.get("parameter_breakdown", {})
            detail = ", ".join(f"{k} {v:,}" for k, v in parts.items() if k != "total" and v)
            rows.append(
                [
                    g.label, f"`{run.path}`", str(run.config.train.seed), f"{s['env_steps_total']:,}", f"{s['updates']:,}",
                    f"{s['wall_s'] / 60:.1f}", f"{s['env_steps_per_s']:.0f}", f"{s['updates_per_s']:.2f}",
                    f"{s['parameters']:,}" + (f" ({detail})" if detail else ""),
                ]
            )  # fmt: skip
    header = ["setting", "run", "seed", "env steps", "updates", "wall (min)", "env steps/s", "updates/s", "parameters"]
    model = groups[0].runs[0].config.model
    text = (
        f"Suite `{groups[0].runs[0].config.suite}`: {', '.join(groups[0].task_names)}. "
        f"Model width {model.embed_dim}, {model.num_layers} layers"
        + (f", MoE {model.moe_num_experts} experts (top-{model.moe_top_k})" if model.moe_num_experts else ", dense feed-forward")
        + "."
    )
    return Section("Runs", [text, Table(header, rows)])


RANDOM_EPISODES = 32
"""Episodes of the random policy behind a reference measured for a capped evaluation."""


def _random_references(groups: list[RunGroup], cache: Path) -> dict[tuple[str, str], float | None]:
    """(group label, task) -> the random policy's mean return under that group's evaluation
    cap. The tasks' own references assume episodes run to the task's own limit; where a run's
    evaluation cuts them sooner (``train.eval_max_steps``), the reference is measured again
    with the same cap (:data:`RANDOM_EPISODES` episodes, kept in ``cache`` for the next report),
    so that a capped evaluation is never normalised against uncapped random play."""
    import json

    from scalezero.training.evaluator import eval_episode_cap, random_policy_returns
    from scalezero.training.setup import resolve_tasks

    known = json.loads(cache.read_text()) if cache.exists() else {}
    refs: dict[tuple[str, str], float | None] = {}
    for g in groups:
        config = g.runs[0].config
        tasks, _ = resolve_tasks(config)
        for task in tasks:
            spec = task.spec
            cap, own = eval_episode_cap(task, config.train.eval_max_steps), eval_episode_cap(task, 0)
            if cap >= own:
                refs[(g.label, spec.name)] = spec.random_return
                continue
            key = f"{spec.name}@{cap}"
            if key not in known:
                known[key] = float(random_policy_returns(task, RANDOM_EPISODES, cap, step_timeout_s=config.train.env_step_timeout_s).mean())
            refs[(g.label, spec.name)] = known[key]
    if known:
        cache.write_text(json.dumps(known, indent=1))
    return refs


def _evaluation(groups: list[RunGroup], refs: dict[tuple[str, str], float | None]) -> Section:
    specs = {s.name: s for g in groups for s in g.runs[0].specs}
    human = any(s.human_return is not None for s in specs.values())
    success = any(s.success_metric for s in specs.values())
    header = ["task", "setting", "final return", "random", "target", "normalised (random 0, target 1)"]
    header += ["human-normalised"] if human else []
    header += ["success rate"] if success else []
    success_means: dict[str, list[float]] = {g.label: [] for g in groups}
    rows = []
    means: dict[str, list[float]] = {g.label: [] for g in groups}
    human_means: dict[str, list[float]] = {g.label: [] for g in groups}
    for task, spec in specs.items():
        for g in groups:
            values = _final_values(g, task)
            if not values:
                continue
            mean = float(np.mean(values))
            spread = f" ± {np.std(values, ddof=1) / math.sqrt(len(values)):.2f} (s.e., {len(values)} seeds)" if len(values) > 1 else ""
            random = refs.get((g.label, task), spec.random_return)
            norm = _normalised(mean, random, spec.target_return)
            if norm is not None:
                means[g.label].append(norm)
            row = [task, g.label, f"{mean:.2f}{spread}", _fmt(random), f"{spec.target_return:g}", _fmt(norm)]
            if human:
                hn = _normalised(mean, spec.random_return, spec.human_return)  # the published scores, by definition
                if hn is not None:
                    human_means[g.label].append(hn)
                row.append(_fmt(hn))
            if success:
                rates = _final_values(g, task, "success_rate")
                if rates:
                    success_means[g.label].append(float(np.mean(rates)))
                row.append(_fmt(float(np.mean(rates))) if rates else "-")
            rows.append(row)
    for g in groups:
        if means[g.label] or human_means[g.label]:
            row = ["mean over tasks", g.label, "", "", "", _fmt(float(np.mean(means[g.label]))) if means[g.label] else "-"]
            if human:
                hm = human_means[g.label]
                row.append(f"mean {_fmt(float(np.mean(hm)))}, median {_fmt(float(np.median(hm)))}" if hm else "-")
            if success:
                sm = success_means[g.label]
                row.append(f"mean {_fmt(float(np.mean(sm)))}" if sm else "-")
            rows.append(row)
    blocks: list = [
        "Greedy search, final evaluation of each run; several seeds give their mean and standard error. "
        "The normalised score puts the random policy at 0 and the task's target return at 1; where evaluation "
        f"episodes are cut sooner than the task's own limit, the random policy is measured again with the same cut ({RANDOM_EPISODES} episodes)."
        + (
            " The human-normalised score, (return - random) / (human - random), puts the published random-policy"
            " score at 0 and the human reference at 1 for the tasks that have one (Atari); its mean and median are over those tasks."
            if human
            else ""
        )
    ]
    return Section("Final evaluation", blocks + [Table(header, rows)])


def _conflict_table(groups: list[RunGroup]) -> Table | None:
    rows = []
    for g in groups:
        values: dict[str, list[float]] = {}
        for run in g.runs:
            train = [r for r in run.metrics["train"] if any(k.startswith("conflict/") for k in r)]
            for r in train[len(train) // 2 :]:
                for k, v in r.items():
                    if k.startswith("conflict/") and not (isinstance(v, float) and math.isnan(v)):
                        values.setdefault(k, []).append(v)
        for part in ("all", "backbone", "experts"):
            cos = values.get(f"conflict/{part}/mean_cosine")
            if cos:
                cells = [values.get(f"conflict/{part}/{stat}") for stat in ("fraction_negative", "conflict_strength")]
                rows.append([g.label, part, _fmt(float(np.mean(cos)), 3), *(_fmt(float(np.mean(c)), 3) if c else "-" for c in cells), str(len(cos))])
    if not rows:
        return None
    header = ["setting", "parameters", "mean pairwise cosine", "fraction of conflicting pairs", "conflict strength", "measurements"]
    return Table(header, rows)


def write_report(runs: str | Path | list[str | Path], out: str | Path | None = None) -> Path:
    """Write ``report.html``, ``report.md`` and their PNGs for one or several finished runs.

    ``out`` defaults to the run directory (one run) or ``<parent of the first run>/report``.
    Returns the path of ``report.html``.
    """
    paths = [Path(p) for p in (runs if isinstance(runs, list) else [runs])]
    data: list[RunData] = [load_run(p) for p in paths]
    groups = group_runs(data)
    out_dir = Path(out) if out is not None else (paths[0] if len(paths) == 1 else paths[0].resolve().parent / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = _random_references(groups, out_dir / "random_references.json")
    random_returns = {task: value for (_, task), value in reversed(list(refs.items()))}  # the first group's, per task
    targets = {s.name: s.target_return for run in data for s in run.specs}

    sections = [_overview(groups), _evaluation(groups, refs)]
    curves = plots.learning_curves(groups, random_returns, out_dir / "learning_curves.png", targets)
    sections.append(Section("Learning curves", ["Greedy evaluation return against environment steps per task.", Image(curves, "learning curves")]))
    losses = plots.loss_curves(groups, out_dir / "losses.png")
    if losses:
        sections.append(Section("Losses", [Image(losses, "training losses")]))
    heat = plots.expert_heatmaps(groups, out_dir / "expert_load.png")
    sections.append(
        Section(
            "Mixture-of-Experts: expert load per task",
            [
                "Share of each task's routed tokens sent to each expert (layer L, expert E), second half of training.",
                Image(heat, "expert load per task"),
            ]
            if heat
            else ["No MoE layers in these runs (`model.moe_num_experts: 0`)."],
        )
    )
    conflict = plots.conflict_curves(groups, out_dir / "gradient_conflict.png")
    table = _conflict_table(groups)
    sections.append(
        Section(
            "Gradient conflict between tasks",
            [
                (
                    "Per-task gradients on the shared transformer weights: mean pairwise cosine, the fraction of task "
                    "pairs pointing against each other (cosine < 0) and the conflict strength, the mean of max(0, -cosine) "
                    "(near 0 when the negative pairs are merely orthogonal); the table averages the second half of training."
                ),
                *( [table] if table else [] ),
                Image(conflict, "gradient conflict"),
            ]
            if conflict
            else ["Not measured in these runs (enable with `train.conflict_every: 100`)."],
        )
    )  # fmt: skip
    cluster_rows = [
        [g.label, str(run.config.train.seed), ", ".join(f"{task}: {c}" for task, c in run.summary["clusters"].items())]
        for g in groups
        for run in g.runs
        if run.summary.get("clusters")
    ]
    if cluster_rows:
        sections.append(
            Section(
                "Task clusters (gradient-based)",
                [("Latest clustering of the tasks by their gradients on the shared weights (`train.cluster_every`); "
                 "with MoE, each cluster routes only to its own experts."), Table(["setting", "seed", "task: cluster"], cluster_rows)],
            )
        )  # fmt: skip
    dps = plots.dps_timeline(groups, out_dir / "dps_timeline.png")
    sections.append(
        Section("Dynamic Parameter Scaling", [Image(dps, "DPS stages")] if dps else ["These runs did not use Dynamic Parameter Scaling."])
    )
    speed = plots.throughput(groups, out_dir / "throughput.png")
    sections.append(Section("Throughput", ["Environment steps per task against wall-clock time.", Image(speed, "throughput")]))

    title = f"scalezero report: {', '.join(g.label for g in groups)}"
    (out_dir / "report.md").write_text(to_markdown(title, sections, out_dir))
    html_path = out_dir / "report.html"
    html_path.write_text(to_html(title, sections))
    return html_path
