"""Seeded smoke runs of the DeepMind Control, Meta-World and TextWorld smoke suites (Atari's is in
``test_atari.py``): a few hundred env steps of real training and evaluation per family, checking
that every task collected its budget, the learner updated and evaluation reports what the family
promises (success rates for Meta-World). Learning itself is checked in ``test_learning.py``."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from scalezero.config import load_suite
from scalezero.training.loop import train

FAMILIES = {
    # suite: (module that must be importable, tasks, evaluation keys beyond return_mean)
    "dmc_smoke": ("dm_control", ["dmc-cartpole-balance", "dmc-walker-stand"], []),
    "mt_smoke": ("metaworld", ["mw-reach-v3", "mw-push-v3"], ["success_rate"]),
    "textworld_smoke": ("textworld", ["textworld-easy", "textworld-medium"], []),
}

EXTRAS = {"dm_control": "dmc", "textworld": "text"}
"""Module -> the extra that installs it, where the names differ."""


@pytest.mark.parametrize("suite", list(FAMILIES))
def test_smoke_suite_trains_and_evaluates(suite, tmp_path):
    module, tasks, extra_keys = FAMILIES[suite]
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'scalezero[{EXTRAS.get(module, module)}]')")
    if module is not None:
        from scalezero.tasks.dmc import configure_headless_gl

        configure_headless_gl()
    config = load_suite(suite)
    assert [t.name for t in config.tasks] == tasks
    run = tmp_path / "run"
    train(config, run, show_progress=False)
    summary = json.loads((run / "metrics.json").read_text())["summary"]
    assert summary["env_steps_per_task"] == {task: config.train.env_steps for task in tasks}
    assert summary["updates"] > 0
    assert set(summary["final_eval"]) == set(tasks)
    for task, result in summary["final_eval"].items():
        assert math.isfinite(result["return_mean"]), task
        for key in extra_keys:
            assert 0.0 <= result[key] <= 1.0, (task, key)
    assert (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())


@pytest.mark.parametrize("script, suite", [("gpu_atari8.sh", "atari8"), ("gpu_dmc18.sh", "dmc18")])
def test_gpu_recipes_name_a_shipped_suite_and_refuse_a_machine_without_cuda(script, suite, tmp_path):
    """The GPU recipes cannot run here; check that they parse, train a shipped suite, and stop
    before training with one clear line when torch sees no GPU."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from scalezero.config import available_suites

    path = Path(__file__).resolve().parent.parent / "benchmarks" / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert f"gpu_recipe {suite} " in path.read_text() and suite in available_suites()
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the recipe would start training")
    done = subprocess.run(["bash", str(path)], env={"PATH": "/usr/bin:/bin", "PY": sys.executable}, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "no CUDA device visible to torch" in done.stderr
