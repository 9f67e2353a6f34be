"""Acting and learning at the same time (``train.overlap``): the same number of updates as the
replay ratio owes, deterministic, exactly resumable, and the acting copy follows the weights."""

import torch
from tiny_run import EXACT_TRAIN, history, resume_copy, tiny

from scalezero.config import config_from_dict
from scalezero.training.loop import build_model, resolve_tasks, train
from scalezero.training.overlap import ActingCopy

RUN = tiny(**EXACT_TRAIN, env_steps=160, eval_every=80)


def _config(overlap: bool):
    return config_from_dict({**RUN, "train": {**RUN["train"], "overlap": overlap}})


def test_overlap_keeps_the_replay_ratio_and_repeats_itself_exactly(tmp_path):
    train(_config(False), tmp_path / "plain", show_progress=False)
    train(_config(True), tmp_path / "a", show_progress=False)
    train(_config(True), tmp_path / "b", show_progress=False)
    plain, a, b = (history(tmp_path / n) for n in ("plain", "a", "b"))
    assert a[2]["updates"] == plain[2]["updates"] == int(1.0 * (160 - 40))
    assert a[2]["env_steps_per_task"] == plain[2]["env_steps_per_task"]
    assert a[0] == b[0] and a[1] == b[1]  # every logged loss and evaluation, bit for bit
    assert a[0] != plain[0]  # an update does not see the collection step beside it: another run


def test_overlap_resumes_exactly(tmp_path):
    straight = tmp_path / "straight"
    train(_config(True), straight, show_progress=False)
    resumed = resume_copy(straight, "ckpt_80", tmp_path / "resumed")
    train(_config(True), resumed, show_progress=False, resume=True)
    a, b = history(straight), history(resumed)
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
