"""Acting and learning at the same time (``train.overlap``): the same number of updates as the
replay ratio owes, deterministic, exactly resumable, and the acting copy follows the weights."""

import json
import shutil

import torch

from scalezero.config import config_from_dict
from scalezero.training.loop import build_model, resolve_tasks, train
from scalezero.training.overlap import ActingCopy

RUN = {
    "tasks": ["cartpole", "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2, "capacity_per_task": 400},
    "train": {"env_steps": 160, "num_envs": 4, "batch_size": 4, "learning_starts": 40, "replay_ratio": 1.0, "eval_every": 80,
              "eval_episodes": 2, "eval_max_steps": 20, "checkpoint_every": 40, "keep_checkpoints": 100, "torch_threads": 1},
}  # fmt: skip


def _config(overlap: bool):
    return config_from_dict({**RUN, "train": {**RUN["train"], "overlap": overlap}})


def _history(run):
    data = json.loads((run / "metrics.json").read_text())
    drop = lambda rows: [{k: v for k, v in r.items() if not (k.endswith("_s") or k.startswith("time"))} for r in rows]
    return drop(data["train"]), drop(data["eval"]), data["summary"]


def test_overlap_keeps_the_replay_ratio_and_repeats_itself_exactly(tmp_path):
    train(_config(False), tmp_path / "plain", show_progress=False)
    train(_config(True), tmp_path / "a", show_progress=False)
    train(_config(True), tmp_path / "b", show_progress=False)
    plain, a, b = (_history(tmp_path / n) for n in ("plain", "a", "b"))
    assert a[2]["updates"] == plain[2]["updates"] == int(1.0 * (160 - 40))
    assert a[2]["env_steps_per_task"] == plain[2]["env_steps_per_task"]
    assert a[0] == b[0] and a[1] == b[1]  # every logged loss and evaluation, bit for bit
    assert a[0] != plain[0]  # an update does not see the collection step beside it: another run


def test_overlap_resumes_exactly(tmp_path):
    straight = tmp_path / "straight"
    train(_config(True), straight, show_progress=False)
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "config.yaml", resumed / "config.yaml")
    shutil.copytree(straight / "checkpoints" / "ckpt_80", resumed / "checkpoints" / "ckpt_80")
    train(_config(True), resumed, show_progress=False, resume=True)
    a, b = _history(straight), _history(resumed)
    assert a[0] == b[0] and a[1] == b[1]


def test_acting_copy_follows_the_online_weights():
    config = _config(True)
    _, layout = resolve_tasks(config)
    model = build_model(config, layout, torch.device("cpu"))
    acting = ActingCopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), acting.model.parameters()))
    acting.refresh(model)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), acting.model.parameters()))
    assert not any(q.requires_grad for q in acting.model.parameters())
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(model.parameters(), acting.model.parameters()))
