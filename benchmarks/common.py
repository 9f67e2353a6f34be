"""Shared helpers of the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


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


def write_result(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with command, commit, machine and date."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def merge(a: dict, b: dict) -> dict:
    """Nested dict ``a`` updated by ``b`` (sections merged key by key)."""
    return {k: (merge(a[k], b[k]) if isinstance(a.get(k), dict) and isinstance(b.get(k), dict) else b.get(k, a.get(k))) for k in {**a, **b}}


def run_training(name: str, suite: dict, seed: int, out: Path) -> Path:
    """One ``scalezero train`` process in ``out/<name>-s<seed>`` with one torch thread; a run
    whose ``metrics.json`` exists is skipped, so benchmarks resume after an interruption."""
    import yaml

    run = out / f"{name}-s{seed}"
    if (run / "metrics.json").exists():
        print(f"[skip] {run.name} (finished earlier)")
        return run
    run.mkdir(parents=True, exist_ok=True)
    suite = merge(suite, {"suite": name, "train": {"seed": seed, "torch_threads": 1}})
    (run / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    start = time.perf_counter()
    print(f"[start] {run.name}")
    with open(run / "train.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "scalezero.cli", "train", "--suite", str(run / "suite.yaml"), "--out", str(run), "--quiet"],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    print(f"[done] {run.name} in {time.perf_counter() - start:.0f} s")
    return run


def run_all(jobs: list[tuple[str, dict, int]], out: Path, parallel: int, title: str) -> None:
    """Run ``(name, suite, seed)`` jobs ``parallel`` at a time under a progress bar."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn()) as bar:
        task = bar.add_task("runs", total=len(jobs))
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for _ in pool.map(lambda job: run_training(*job, out), jobs):
                bar.advance(task)
