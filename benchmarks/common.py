"""Shared helpers of the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Finished benchmark runs' metrics, one JSON per run (see :func:`archive_run`).
ARCHIVE = RESULTS / "runs"


SMOKE_MODEL = {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8}
"""The tiny model every benchmark's ``--smoke`` run trains: it checks the pipeline, not the learning."""


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def code_version() -> str:
    """The commit the package's code is at, marked when ``scalezero/`` has uncommitted changes."""
    commit = git_commit() or "unknown"
    try:
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "scalezero"], check=False, capture_output=True).returncode == 1
    except OSError:
        changed = False
    return commit + (" with uncommitted changes to scalezero/" if changed else "")


def write_result(name: str, payload: dict, path: Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``path``) with command, commit, machine and date."""
    record = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json" if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def save_outputs(name: str, result: dict, plot: Callable[[dict, Path], None], smoke_dir: Path | None = None) -> Path:
    """A benchmark's plot and JSON: ``benchmarks/results/<name>.png`` and ``.json`` (the JSON
    through :func:`write_result`), or, for a smoke run (``smoke_dir`` given), plain
    ``<name>_smoke.png`` and ``.json`` there, so checking the pipeline never overwrites results.
    Returns the JSON's path."""
    if smoke_dir is None:
        plot(result, RESULTS / f"{name}.png")
        return write_result(name, result)
    smoke_dir.mkdir(parents=True, exist_ok=True)
    plot(result, smoke_dir / f"{name}_smoke.png")
    path = smoke_dir / f"{name}_smoke.json"
    path.write_text(json.dumps(result, indent=1))
    return path


def merge(a: dict, b: dict) -> dict:
    """Nested dict ``a`` updated by ``b`` (sections merged key by key)."""
    return {k: (merge(a[k], b[k]) if isinstance(a.get(k), dict) and isinstance(b.get(k), dict) else b.get(k, a.get(k))) for k in {**a, **b}}


def add_probe_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set SECTION.KEY=VALUE ...`` (repeatable), the overrides of a probe: read them with
    ``scalezero.cli.parse_overrides`` and name the outputs with :func:`probe_name`."""
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE", help=f"a probe: change the settings (e.g. {example}); outputs named after the overrides")


def probe_name(base: str, probe: dict) -> str:
    """The name of a probe's outputs: ``base`` and each override ``{section: {key: value}}``
    appended as ``_<key><value>`` (``minatar_single_reset_every5000``)."""
    return "_".join([base, *(f"{key}{value}" for values in probe.values() for key, value in values.items())])


def seeds_name(base: str, seeds: list[int], usual: list[int]) -> str:
    """``base`` for the benchmark's ``usual`` seeds; for any others (a fresh-seed check) the
    seeds appended as ``_seeds<s>-<s>``, so the usual seeds' outputs are not overwritten."""
    return base if list(seeds) == list(usual) else f"{base}_seeds{'-'.join(map(str, seeds))}"


def run_path(out: Path, name: str, suite: dict, seed: int) -> Path:
    """``out/<name>-<digest>-s<seed>``: the digest is taken over the suite's settings, so two
    benchmarks that train the same configuration in the same ``out`` share its runs, and a
    changed configuration never reuses an old run by mistake."""
    import hashlib

    settings = {k: v for k, v in suite.items() if k != "suite"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return out / f"{name}-{digest}-s{seed}"


#: Trainings started by :func:`run_training` that have not ended yet.
_TRAININGS: set[subprocess.Popen] = set()
#: Set by :func:`stop_trainings`: no training starts after it (the runner's pool would
#: otherwise start its queued jobs as the stopped ones end). Guarded, with ``_TRAININGS``, by
#: ``_STARTING``, so a training cannot start between the flag and the terminations.
_STOPPING = threading.Event()
_STARTING = threading.Lock()


def stop_trainings(signum: int | None = None, frame: object = None) -> None:
    """Terminate every training this process started and wait for them; as a signal handler
    (``run_all`` installs it for SIGTERM) then exit. Without it, ``kill <benchmark pid>`` ends
    the runner but leaves its trainings running on, orphaned, on the cores. Each training
    answers SIGTERM with a final checkpoint and exit code 130 (``scalezero train``'s own
    handler), so the run is not archived, and the benchmark started again resumes it."""
    with _STARTING:
        _STOPPING.set()
        for proc in _TRAININGS:
            proc.terminate()
    for proc in list(_TRAININGS):
        proc.wait()
    if signum is not None:
        raise SystemExit(128 + signum)


def run_training(name: str, suite: dict, seed: int, out: Path, archive: Path | None = None) -> Path:
    """One ``scalezero train`` process in :func:`run_path` with one torch thread. Benchmarks
    survive interruptions: a run whose ``metrics.json`` exists, here or in ``archive``, is
    skipped, and one stopped after a checkpoint continues from it (``scalezero train --resume``).
    Finished runs are copied into ``archive`` (see :func:`archive_run`)."""
    run = run_path(out, name, suite, seed)
    if (run / "metrics.json").exists() or is_archived(run, archive):
        print(f"[skip] {run.name} (finished earlier)")
        if archive is not None:
            archive_run(run, archive)
        return run
    if _STOPPING.is_set():
        raise RuntimeError(f"{run.name}: not started, the benchmark is stopping")
    run.mkdir(parents=True, exist_ok=True)
    checkpoints = run / "checkpoints"
    if (run / "config.yaml").exists() and checkpoints.is_dir() and any(checkpoints.iterdir()):
        command, mode, verb = ["--resume", str(run)], "a", "resume"
    else:
        suite = merge(suite, {"suite": name, "train": {"seed": seed, "torch_threads": 1}})
        (run / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
        command, mode, verb = ["--suite", str(run / "suite.yaml"), "--out", str(run)], "w", "start"
    commit = code_version()
    with open(run / "commit.txt", mode) as f:
        f.write(commit if verb == "start" else f" (resumed at {commit})")
    start = time.perf_counter()
    print(f"[{verb}] {run.name}")
    with open(run / "train.log", mode) as log:
        with _STARTING:
            if _STOPPING.is_set():
                raise RuntimeError(f"{run.name}: not started, the benchmark is stopping")
            proc = subprocess.Popen([sys.executable, "-m", "scalezero.cli", "train", *command, "--quiet"], stdout=log, stderr=subprocess.STDOUT)
            _TRAININGS.add(proc)
        try:
            code = proc.wait()
        finally:
            _TRAININGS.discard(proc)
    if code:
        raise subprocess.CalledProcessError(code, proc.args)
    print(f"[done] {run.name} in {time.perf_counter() - start:.0f} s")
    if archive is not None:
        archive_run(run, archive)
    return run


def is_archived(run: Path, archive: Path | None) -> bool:
    """Whether the run ``run`` (a :func:`run_path`) has finished and is kept in ``archive``."""
    return archive is not None and (archive / f"{run.name}.json").exists()


def archive_run(run: Path, archive: Path, commit: str | None = None) -> Path:
    """Keep a finished run's ``metrics.json`` as ``archive/<run name>.json`` (with the commit
    that trained it), unless it is there already. Run directories are scratch space; the
    archive is committed, so a benchmark whose runs take longer than one sitting is finished
    over several, and its summary can be recomputed from the raw metrics at any time."""
    path = archive / f"{run.name}.json"
    if not path.exists() and (run / "metrics.json").exists():
        archive.mkdir(parents=True, exist_ok=True)
        metrics = json.loads((run / "metrics.json").read_text())
        started = run / "commit.txt"  # written when the run started: the code that trained it
        commit = commit or (started.read_text().strip() if started.exists() else git_commit())
        path.write_text(json.dumps({"run": run.name, "commit": commit, "metrics": metrics}, separators=(",", ":")))
    return path


def run_metrics(run: Path, archive: Path | None = None) -> dict:
    """A finished run's ``metrics.json`` contents, from its directory or from ``archive``."""
    if (run / "metrics.json").exists():
        return json.loads((run / "metrics.json").read_text())
    if archive is not None and (archive / f"{run.name}.json").exists():
        return json.loads((archive / f"{run.name}.json").read_text())["metrics"]
    raise FileNotFoundError(f"no metrics for run {run.name} in {run.parent} or {archive}")


def run_all(jobs: list[tuple[str, dict, int]], out: Path, parallel: int, title: str, archive: Path | None = None) -> dict[str, list[dict]]:
    """Run ``(name, suite, seed)`` jobs ``parallel`` at a time under a progress bar; returns
    name -> the runs' ``metrics.json`` contents, in the order of the jobs (seeds). With
    ``archive`` (the benchmarks use :data:`ARCHIVE`; smoke runs do not), archived runs are not
    trained again and new ones are archived. SIGTERM stops the trainings too (:func:`stop_trainings`)."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    previous = signal.signal(signal.SIGTERM, stop_trainings)
    try:
        with Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn()) as bar:
            task = bar.add_task("runs", total=len(jobs))
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                paths = []
                for path in pool.map(lambda job: run_training(*job, out, archive), jobs):
                    paths.append(path)
                    bar.advance(task)
    finally:
        signal.signal(signal.SIGTERM, previous)
    metrics: dict[str, list[dict]] = {}
    for (name, _, _), path in zip(jobs, paths):
        metrics.setdefault(name, []).append(run_metrics(path, archive))
    return metrics


#: Returns per MinAtar game that a multi-task agent reaches within the CPU budget of these
#: benchmarks (20,000 steps per game; chosen from the runs in BENCHMARKS.md). DPS uses them as
#: targets (a game that reaches its target is solved); the ablations normalise by them.
CPU_TARGETS = {
    "minatar-breakout": 3.0,
    "minatar-asterix": 1.0,
    "minatar-freeway": 1.0,
    "minatar-seaquest": 0.5,
    "minatar-space_invaders": 10.0,
}


def target_scores(returns: dict[str, float]) -> dict[str, float]:
    """Game -> ``(return - random) / (CPU target - random)``: 0 at the random policy's return,
    1 at :data:`CPU_TARGETS`, so the games weigh equally in a mean (not capped)."""
    from scalezero.tasks import get_task

    out = {}
    for game, r in returns.items():
        low = get_task(game).spec.random_return or 0.0
        out[game] = (r - low) / (CPU_TARGETS[game] - low)
    return out


def conflict_summary(train_rows: list[dict]) -> dict[str, float]:
    """Mean of each conflict statistic over the second half of training."""
    rows = [r for r in train_rows if any(k.startswith("conflict/") for k in r)]
    rows = rows[len(rows) // 2 :]
    keys = sorted({k for r in rows for k in r if k.startswith("conflict/")})
    out = {}
    for k in keys:
        values = [r[k] for r in rows if k in r and not math.isnan(r[k])]
        out[k] = sum(values) / len(values) if values else float("nan")
    return out


def late_losses(metrics: dict, last: int | None = None, tail: float = 0.1) -> dict[str, float]:
    """Each loss term (unweighted) averaged over the end of training: the last ``last`` logged
    training rows, or the last ``tail`` fraction of them when ``last`` is None. NaN-free: a term
    absent from every row is absent from the result."""
    rows = [r for r in metrics["train"] if any(k.startswith("loss/") for k in r)]
    rows = rows[-(last if last is not None else max(1, int(len(rows) * tail))) :] if rows else []
    keys = sorted({k for r in rows for k in r if k.startswith("loss/")})
    return {k.removeprefix("loss/"): float(sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r)) for k in keys}


def returns_by_eval(metrics: dict) -> dict[int, dict[str, float]]:
    """Env steps per game at each evaluation -> game -> mean evaluation return."""
    by_step: dict[int, dict[str, float]] = {}
    for row in metrics["eval"]:
        by_step.setdefault(row["env_steps"], {})[row["task"]] = row["return_mean"]
    return dict(sorted(by_step.items()))


def minatar_parser(doc: str, steps: int = 20_000, out: str = "runs/minatar_bench") -> argparse.ArgumentParser:
    """The arguments every training benchmark takes (the MinAtar ones with these defaults):
    seeds, runs at a time, env steps per game, the shared run directory and the smoke switch;
    each script adds its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--steps", type=int, default=steps, help="env steps per game")
    parser.add_argument("--out", default=out, help="run directories (shared by the benchmarks of one family)")
    parser.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline (results mean nothing)")
    return parser


def plot_game_curves(games: dict[str, dict], path: Path, ylabel: str, lines: dict[str, str], prefix: str = "", seeds: list[int] | None = None) -> None:
    """One panel per game: each seed's ``curve`` of ``(env steps, return)`` (labelled by
    ``seeds``, in the curves' order; without them 0, 1, ...), and horizontal
    reference lines ``lines`` (label -> key of the game's entry: the first dotted grey, the
    second dashed black). Titles drop ``prefix``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = [{"color": "grey", "ls": ":", "lw": 1}, {"color": "black", "ls": "--", "lw": 0.8}]
    fig, axes = plt.subplots(1, len(games), figsize=(3.2 * len(games), 3.2))
    for ax, (game, g) in zip(np.atleast_1d(axes), games.items()):
        for seed, curve in zip(seeds or range(len(g["curve"])), g["curve"]):
            ax.plot([s for s, _ in curve], [r for _, r in curve], marker=".", label=f"seed {seed}")
        for (label, key), style in zip(lines.items(), styles):
            ax.axhline(g[key], label=label, **style)
        ax.set_title(game.removeprefix(prefix), fontsize=11)
        ax.set_xlabel("env steps", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def minatar_suite(moe: bool, steps: int | None = None) -> dict:
    """The minatar suite as the MinAtar benchmarks train it: every benchmark starts from here,
    so their MoE baselines are one and the same configuration (and one set of runs).

    Evaluations every 5,000 steps per game (32 episodes each) and the gradient-conflict
    diagnostic every 100 updates; ``moe`` adds 4 routed experts (top-1) beside a shared one."""
    base = yaml.safe_load((ROOT / "scalezero" / "suites" / "minatar.yaml").read_text())
    base = merge(base, {"train": {"eval_every": 5000, "conflict_every": 100}})
    if moe:
        base = merge(base, {"model": {"moe_num_experts": 4, "moe_top_k": 1, "moe_shared_expert": True}})
    if steps is not None:
        base = merge(base, {"train": {"env_steps": steps}})
    return base
