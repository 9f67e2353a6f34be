"""Checkpoints: exact round trip of model, target and optimiser; damaged files are refused."""

import pytest
import torch

from scalezero.config import config_from_dict
from scalezero.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from scalezero.training.learner import make_optimizer
from scalezero.training.loop import build_model, resolve_tasks


def _model(seed):
    torch.manual_seed(seed)
    config = config_from_dict({"tasks": ["cartpole", "minatar-asterix"], "model": {"embed_dim": 32, "num_heads": 2, "num_layers": 1}})
    _, layout = resolve_tasks(config)
    return build_model(config, layout, torch.device("cpu"))


def _trained():
    model, target = _model(0), _model(1)
    opt = make_optimizer(model, 1e-3, 1e-4)
    loss = sum(p.float().pow(2).sum() for p in model.parameters())
    loss.backward()
    opt.step()
    return model, target, opt


def test_round_trip_is_exact(tmp_path):
    model, target, opt = _trained()
    save_checkpoint(tmp_path / "checkpoints" / "ckpt_100", model, target, opt, {"env_steps": 100})
    save_checkpoint(tmp_path / "checkpoints" / "ckpt_20", model, target, opt, {"env_steps": 20})
    path = latest_checkpoint(tmp_path)
    assert path.name == "ckpt_100"
    m2, t2 = _model(5), _model(6)
    o2 = make_optimizer(m2, 1e-3, 1e-4)
    state = load_checkpoint(path, m2, t2, o2)
    assert state == {"env_steps": 100}
    for a, b in zip(model.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(target.state_dict().values(), t2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], o2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        for name in s1[k]:
            assert torch.equal(torch.as_tensor(s1[k][name]), torch.as_tensor(s2[k][name]))


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "wrong_shape"])
def test_damaged_checkpoints_are_refused(tmp_path, damage):
    model, target, opt = _trained()
    path = save_checkpoint(tmp_path / "ckpt_1", model, target, opt, {})
    if damage == "truncate":
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_json":
        (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        if damage == "wrong_shape":
            config = config_from_dict({"tasks": ["cartpole"], "model": {"embed_dim": 16, "num_heads": 2, "num_layers": 1}})
            _, layout = resolve_tasks(config)
            load_checkpoint(path, build_model(config, layout, torch.device("cpu")))
        else:
            load_checkpoint(path, _model(2))


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        latest_checkpoint(tmp_path)
