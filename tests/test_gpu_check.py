"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end on the CPU: its smoke run
fills every part of the JSON with finite numbers and its correctness comparisons pass, so
the one run on a lent GPU machine is not spent on a broken script."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("environment", "correctness", "learner_speed", "search_speed", "training")


def numbers(value, path: str = ""):
    """Every (path, number) in a JSON value (booleans are not numbers here)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def test_cpu_smoke_run_fills_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke", "--out", str(out)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for part in PARTS:
        assert report[part]["ok"] is True, (part, report[part].get("error"), report[part].get("traceback"))
    bad = [(p, v) for p, v in numbers(report) if not math.isfinite(v)]
    assert not bad, bad

    correctness = report["correctness"]
    assert all(correctness["passed"].values()), correctness["passed"]
    assert set(correctness["strict_max_abs_diff"]) == {"forward", "kv_cache", "learner"}
    assert max(correctness["strict_max_abs_diff"].values()) <= correctness["tolerance"]
    assert correctness["search"]["valid"] is True

    learner = report["learner_speed"]
    for size in ("minatar", "atari8", "minatar_cpu"):
        assert learner[size]["updates_per_s"] > 0
    assert learner["minatar_device_over_cpu"] > 0
    for suite in ("minatar", "atari8"):
        rows = report["search_speed"][suite]["by_roots"]
        assert [r["roots"] for r in rows] and all(r["searches_per_s"] > 0 for r in rows)

    training = report["training"]
    assert training["updates"] > 0 and training["env_steps"] > 0
    assert set(training["phase_s"]) >= {"collect", "update", "evaluate"}
    assert "correctness" in proc.stdout and "training cartpole" in proc.stdout  # the closing table
