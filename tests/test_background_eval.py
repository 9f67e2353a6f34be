"""Evaluation in a second process (``train.background_eval``): the same figures as the loop's
own evaluation at the same points, the same training, and an exact resume with an evaluation
out at the checkpoint."""

import json
import os

import pytest
from tiny_run import EXACT_TRAIN, history, resume_copy, tiny

from scalezero.config import ConfigError, config_from_dict
from scalezero.training.loop import train

RUN = tiny(**EXACT_TRAIN, env_steps=160, eval_every=40, checkpoint_every=80)


def _config(background: bool):
    return config_from_dict({**RUN, "train": {**RUN["train"], "background_eval": background}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg")
    train(_config(False), root / "plain", show_progress=False)
    train(_config(True), root / "background", show_progress=False)
    return root


def test_background_evaluation_measures_what_the_loop_would(runs):
    plain_train, plain_eval, _ = history(runs / "plain")
    bg_train, bg_eval, _ = history(runs / "background")
    assert bg_train == plain_train  # evaluation never touches training
    assert bg_eval == plain_eval  # every point, every task, every figure
    assert [r["env_steps"] for r in bg_eval[::2]] == [40, 80, 120, 160]
    workers = [r for r in json.loads((runs / "background" / "metrics.json").read_text())["eval"] if "eval_worker_s" in r]
    assert len(workers) == 2 * 3 and all(r["eval_worker_s"] > 0 for r in workers)  # all but the last ran in the worker


def test_background_evaluation_resumes_exactly_with_an_evaluation_out(runs, tmp_path):
    straight = runs / "background"
    state = json.loads((straight / "checkpoints" / "ckpt_80" / "state.json").read_text())
    assert state["state"]["loop"]["pending_eval"]["point"]["env_steps"] == 80  # the evaluation of these weights was out
    resumed = resume_copy(straight, "ckpt_80", tmp_path / "resumed")
    train(_config(True), resumed, show_progress=False, resume=True)
    a, b = history(straight), history(resumed)
    assert a[0] == b[0] and a[1] == b[1]


def test_background_evaluation_needs_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="background_eval"):
        train(_config(True), tmp_path / "run", show_progress=False)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process groups from /proc")
def test_ctrl_c_with_an_evaluation_out_checkpoints_and_leaves_no_process(tmp_path):
    """Ctrl-C reaches the worker too: it ignores it, the training process writes its final
    checkpoint and stops the worker, and nothing of the run's process group is left."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    suite = {**RUN, "tasks": ["minatar-breakout"], "train": {**RUN["train"], "env_steps": 100_000, "eval_every": 200,
             "eval_episodes": 8, "eval_max_steps": 0, "checkpoint_every": 100_000, "background_eval": True}}  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "scalezero.cli", "train", "--suite", str(tmp_path / "suite.yaml"), "--out", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "eval.csv").exists():  # the first evaluation was taken: the next one is out
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert [p.name for p in (run / "checkpoints").iterdir()]
    deadline = time.time() + 20  # multiprocessing's resource tracker leaves once the run has gone
    while _alive_in_group(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive_in_group(proc.pid)


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (those wait for init to reap them)."""
    from pathlib import Path

    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_a_pending_evaluation_reads_back_from_its_checkpoint_record_in_both_layouts():
    import dataclasses

    from scalezero.training.background_eval import EvalPoint, PendingEvaluation

    pending = PendingEvaluation(EvalPoint(env_steps=80, updates=20, wall_s=3.5, env_steps_total=160), dps_stage=1)
    assert PendingEvaluation.from_state(json.loads(json.dumps(dataclasses.asdict(pending)))) == pending
    flat = {"env_steps": 80, "updates": 20, "wall_s": 3.5, "env_steps_total": 160, "dps_stage": 1}  # before 2026-12-03
    assert PendingEvaluation.from_state(flat) == pending
