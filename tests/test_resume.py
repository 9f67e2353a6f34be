"""Never lose a run: SIGKILL at any moment and resume, SIGTERM writes a final checkpoint,
damaged or hostile checkpoints are refused without executing anything, broken envs and NaN
losses are survived."""

import io
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_run import EXACT_TRAIN, TINY, history, resume_copy, tiny

from scalezero.config import config_from_dict
from scalezero.errors import CheckpointError
from scalezero.tasks import EnvBatch
from scalezero.training.checkpoint import latest_checkpoint, list_checkpoints, load_arrays, load_checkpoint, verify_checkpoint
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks, train
from scalezero.training.metrics import MetricsLogger
from scalezero.training.run_state import restore_run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "flaky_envs.py"


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scalezero.cli", "train", *args, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _wait_for_checkpoints(run: Path, count: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while len(list_checkpoints(run)) < count:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _restored(run: Path, path: Path):
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    tasks, layout = resolve_tasks(config)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    learner = Learner(model, layout, config, torch.device("cpu"))
    loop = restore_run(path, learner, collector, None, MetricsLogger(run / "probe", [t.spec.name for t in tasks]))
    return loop, learner, collector


def test_sigkill_at_a_random_moment_then_resume(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    proc = _cli("--suite", str(suite), "--out", str(run))
    _wait_for_checkpoints(run, 2, proc)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.0))  # anywhere, a checkpoint write included
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = latest_checkpoint(run)
    verify_checkpoint(last)  # what is there is complete and intact
    state = json.loads((last / "state.json").read_text())["state"]
    # Restoring gives exactly the checkpoint's replay contents and counters.
    loop, learner, collector = _restored(run, last)
    arrays = load_arrays(last)
    for t, replay in collector.replays.items():
        for name, value in replay.state_dict().items():
            np.testing.assert_array_equal(value, arrays[f"replay{t}.{name}"], err_msg=name)
    assert learner.updates == state["updates"] and {str(k): v for k, v in collector.env_steps.items()} == state["env_steps_per_task"]
    assert loop.clock == state["loop"]["clock"]
    # The resumed run finishes the budget and keeps learning from where it was.
    done = _cli("--resume", str(run))
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err.decode()
    summary = json.loads((run / "metrics.json").read_text())["summary"]
    assert summary["env_steps_per_task"] == {"cartpole": 240, "minatar-breakout": 240}
    assert summary["updates"] > state["updates"] and summary["robustness"]["resumes"] == 1
    assert len(list_checkpoints(run)) == 2  # keep_checkpoints


#: One torch thread (bitwise repeatable), a checkpoint every 40 steps, all kept; the tasks of
#: the classic suite or two MinAtar games.
EXACT = tiny(**EXACT_TRAIN, env_steps=200, eval_every=80)
EXACT_TASKS = {"classic": ["cartpole", "acrobot"], "minatar": ["minatar-breakout", "minatar-asterix"]}


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    train_a, eval_a, _ = history(a)
    train_b, eval_b, _ = history(b)
    assert len(train_a) >= 3 and len(eval_a) == 2 * 3  # 2 tasks, evaluated at 80, 160 and 200
    assert train_b == train_a  # every logged loss, bit for bit
    assert eval_b == eval_a
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # networks, optimiser, RNG


@pytest.fixture(scope="module", params=sorted(EXACT_TASKS))
def straight_run(request, tmp_path_factory):
    run = tmp_path_factory.mktemp(f"straight-{request.param}") / "run"
    train(config_from_dict({**EXACT, "tasks": EXACT_TASKS[request.param]}), run, show_progress=False)
    return run


def _exact_config(run: Path):
    """The straight run's own configuration (its tasks included)."""
    return config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))


@pytest.mark.parametrize("checkpoint", ["ckpt_80", "ckpt_120"])
def test_resume_reproduces_the_straight_run_exactly(straight_run, tmp_path, checkpoint):
    """Killed at or after a checkpoint, then resumed: the same losses and evaluations, bit for
    bit, as the run that never stopped (episodes running at the kill continue, rebuilt)."""
    run = resume_copy(straight_run, checkpoint, tmp_path / "resumed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no env may fall back to new episodes here
        train(_exact_config(straight_run), run, show_progress=False, resume=True)
    _assert_same_run(straight_run, run)
    assert history(run)[2]["robustness"]["resumes"] == 1


def test_sigkill_between_checkpoints_then_resume_is_exact(straight_run, tmp_path):
    suite = tmp_path / "exact.yaml"
    suite.write_text((straight_run / "config.yaml").read_text())
    run = tmp_path / "run"
    proc = _cli("--suite", str(suite), "--out", str(run))
    _wait_for_checkpoints(run, 3, proc)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _cli("--resume", str(run))
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err.decode()
    assert "does not follow its seed" not in err.decode()
    _assert_same_run(straight_run, run)


#: Trains like the CLI, but the process SIGKILLs itself half-way through writing the third
#: checkpoint's state.json (after model.safetensors and arrays.npz are written).
_DIE_IN_WRITE = """
import os, signal, sys
import scalezero.training.checkpoint as ck
real = ck._write_synced
def dying(path, data):
    if path.parent.name == "ckpt_120.tmp" and path.name == "state.json":
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, data)
ck._write_synced = dying
from scalezero.cli import main
sys.exit(main(["train", "--suite", sys.argv[1], "--out", sys.argv[2], "--quiet"]))
"""


def test_sigkill_inside_a_checkpoint_write_then_resume_is_exact(straight_run, tmp_path):
    suite = tmp_path / "exact.yaml"
    suite.write_text((straight_run / "config.yaml").read_text())
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _DIE_IN_WRITE, str(suite), str(run)], check=False, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert (run / "checkpoints" / "ckpt_120.tmp" / "arrays.npz").exists()  # killed inside the write
    assert latest_checkpoint(run).name == "ckpt_80"
    done = _cli("--resume", str(run))
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err.decode()
    assert not (run / "checkpoints" / "ckpt_120.tmp").exists()
    _assert_same_run(straight_run, run)


def test_env_batch_rebuilds_its_copies_from_seeds_and_actions():
    from scalezero.tasks import get_task

    for name in ("cartpole", "minatar-breakout"):
        batch = EnvBatch(get_task(name), 3, seed=11, max_episode_steps=25)
        rng = np.random.default_rng(0)
        for _ in range(60):  # several episode ends (the cap of 25 included)
            batch.step(rng.integers(0, get_task(name).spec.num_actions, size=3))
        state = batch.state_dict()
        twin = EnvBatch(get_task(name), 3, seed=999, max_episode_steps=25)
        twin.load_state_dict(state)
        np.testing.assert_array_equal(twin.obs, batch.obs)
        actions = rng.integers(0, get_task(name).spec.num_actions, size=(30, 3))
        for a in actions:  # and both go on the same way
            x, y = batch.step(a), twin.step(a)
            np.testing.assert_array_equal(x.obs, y.obs)
            np.testing.assert_array_equal(x.reward, y.reward)
            np.testing.assert_array_equal(x.done, y.done)


def test_an_env_that_ignores_its_seed_is_detected():
    from scalezero.tasks.vector import EnvReplayMismatch

    config = config_from_dict(_flaky_suite("Unseeded"))
    tasks, _ = resolve_tasks(config)
    batch = EnvBatch(tasks[0], 2, seed=0)
    for _ in range(5):
        batch.step(np.array([0, 1]))
    with pytest.raises(EnvReplayMismatch, match="does not follow its seed"):
        EnvBatch(tasks[0], 2, seed=0).load_state_dict(batch.state_dict())


def test_sigterm_writes_a_final_checkpoint(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(tiny(env_steps=100_000, keep_checkpoints=10)))
    run = tmp_path / "run"
    proc = _cli("--suite", str(suite), "--out", str(run))
    _wait_for_checkpoints(run, 1, proc)  # training (and its signal handling) is under way
    first = list_checkpoints(run)[0]
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err.decode()
    assert "continue with: scalezero train --resume" in err.decode()
    last = latest_checkpoint(run)
    verify_checkpoint(last)
    assert last != first  # written on the way out, not the periodic one


def test_leftover_tmp_and_damaged_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(config_from_dict(tiny(env_steps=120, keep_checkpoints=5)), run, show_progress=False)
    ckpts = list_checkpoints(run)
    (run / "checkpoints" / "ckpt_999.tmp").mkdir()  # what a kill during a write leaves behind
    (run / "checkpoints" / "ckpt_999.tmp" / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(run) == ckpts[-1]
    data = bytearray((ckpts[-1] / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (ckpts[-1] / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        verify_checkpoint(ckpts[-1])
    config = config_from_dict(TINY)
    with pytest.warns(RuntimeWarning, match="trying an older checkpoint"):
        train(config, run, show_progress=False, resume=True)  # resumes from the one before
    assert not (run / "checkpoints" / "ckpt_999.tmp").exists()  # pruned


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rewrite_manifest(path: Path) -> None:
    import hashlib

    manifest = json.loads((path / "MANIFEST.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "MANIFEST.json").write_text(json.dumps(manifest))


def test_pickle_payloads_are_never_executed(tmp_path):
    run = tmp_path / "run"
    train(config_from_dict(tiny(env_steps=80)), run, show_progress=False)
    path = latest_checkpoint(run)
    marker = tmp_path / "pwned"
    # An attacker who also rewrites the manifest: a pickled object array inside arrays.npz ...
    buffer = io.BytesIO()
    np.savez(buffer, replay0_obs=np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    (path / "arrays.npz").write_bytes(buffer.getvalue())
    _rewrite_manifest(path)
    with pytest.raises(CheckpointError, match="arrays.npz"):
        load_arrays(path)
    # ... and a pickle in place of the tensors.
    (path / "model.safetensors").write_bytes(pickle.dumps(_Payload(str(marker))))
    _rewrite_manifest(path)
    config = config_from_dict(TINY)
    _, layout = resolve_tasks(config)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path, build_model(config, layout, torch.device("cpu")))
    assert not marker.exists()


def _flaky_suite(cls: str, **train_extra):
    return {
        "tasks": [{"name": "flaky", "entry_point": f"{FIXTURES}:{cls}", "target_return": 5.0}, "cartpole"],
        "model": TINY["model"], "search": TINY["search"], "replay": TINY["replay"],
        "train": {**TINY["train"], "env_steps": 120, "checkpoint_every": 120, **train_extra},
    }  # fmt: skip


@pytest.mark.parametrize("cls, extra", [("Crashing", {}), ("Hanging", {"env_step_timeout_s": 0.5})])
def test_broken_envs_are_restarted_and_training_goes_on(tmp_path, cls, extra):
    with pytest.warns(RuntimeWarning, match="restarted it"):
        train(config_from_dict(_flaky_suite(cls, **extra)), tmp_path / "run", show_progress=False)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())["summary"]
    assert summary["env_steps_per_task"]["flaky"] == 120
    assert summary["robustness"]["env_restarts"]["flaky"] >= 4 and summary["robustness"]["env_restarts"]["cartpole"] == 0


def test_wrong_observation_shape_and_actions_out_of_range_are_named(tmp_path):
    config = config_from_dict(_flaky_suite("WrongShape"))
    tasks, _ = resolve_tasks(config)
    batch = EnvBatch(tasks[0], 2, seed=0)
    with pytest.raises(ValueError, match=r"task 'flaky': .*observation of shape \(2,\), but its spec says \(3,\)"):
        batch.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"actions must be 2 integers in \[0, 2\)"):
        EnvBatch(tasks[1], 2, seed=0).step(np.array([0, 2]))


def test_nan_losses_are_skipped_then_rolled_back(tmp_path, monkeypatch):
    original = Learner.compute_losses
    calls = {"n": 0}

    def sometimes_nan(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        if 30 <= calls["n"] < 36:  # six NaN updates in a row, after the first checkpoint
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(Learner, "compute_losses", sometimes_nan)
    data = tiny(env_steps=200, replay_ratio=1.0, checkpoint_every=60, max_nonfinite_updates=4)
    with pytest.warns(RuntimeWarning, match="rolling back"):
        train(config_from_dict(data), tmp_path / "run", show_progress=False)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())["summary"]
    assert summary["robustness"]["nonfinite_updates_skipped"] == 6 and summary["robustness"]["rollbacks"] == 1
    model_file = latest_checkpoint(tmp_path / "run") / "model.safetensors"
    from safetensors.torch import load_file

    assert all(torch.isfinite(v).all() for k, v in load_file(str(model_file)).items() if v.is_floating_point())


def test_a_checkpoint_that_verifies_but_does_not_load_falls_back_to_an_older_one(straight_run, tmp_path):
    import shutil

    run = resume_copy(straight_run, "ckpt_80", tmp_path / "resumed")
    shutil.copytree(straight_run / "checkpoints" / "ckpt_120", run / "checkpoints" / "ckpt_120")
    state = json.loads((run / "checkpoints" / "ckpt_120" / "state.json").read_text())
    del state["state"]["learner"]  # intact bytes (the manifest is rewritten), unusable content
    (run / "checkpoints" / "ckpt_120" / "state.json").write_text(json.dumps(state))
    _rewrite_manifest(run / "checkpoints" / "ckpt_120")
    with pytest.warns(RuntimeWarning, match="cannot restore ckpt_120 .*trying an older checkpoint"):
        train(_exact_config(straight_run), run, show_progress=False, resume=True)
    _assert_same_run(straight_run, run)  # from ckpt_80 on, still the same run


def test_prune_clears_what_an_interrupted_delete_leaves_and_files_share_one_mode(straight_run, tmp_path):
    import shutil
    import stat

    from scalezero.training.checkpoint import prune_checkpoints

    run = tmp_path / "run"
    shutil.copytree(straight_run / "checkpoints", run / "checkpoints")
    half_deleted = run / "checkpoints" / "ckpt_40"
    (half_deleted / "MANIFEST.json").unlink()  # a delete cut short after the manifest went
    (run / "checkpoints" / "ckpt_160.deleting.tmp").mkdir()
    prune_checkpoints(run, keep=2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_160", "ckpt_200"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (straight_run / "checkpoints" / "ckpt_200").iterdir()}
    assert len(set(modes.values())) == 1, modes  # model.safetensors is not 0600 beside 0644 files
