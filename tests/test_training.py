"""Acting and learning pieces on a mixed suite: masks hold end to end, batches are balanced, the EMA moves."""

import json

import numpy as np
import pytest
import torch

from scalezero.config import config_from_dict
from scalezero.replay import nstep_value_targets
from scalezero.tasks import EnvBatch
from scalezero.training.acting import ContextHistory, search_actions
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks

SMALL = {
    "tasks": ["cartpole", "minatar-breakout", "minatar-seaquest"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 8},
    "replay": {"unroll_steps": 3, "td_steps": 2},
    "train": {"num_envs": 6, "batch_size": 5, "context_steps": 2},
}


def _setup(algorithm="puct"):
    config = config_from_dict({**SMALL, "search": {**SMALL["search"], "algorithm": algorithm}})
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    # Random (non-zero) heads, so the priors actually prefer some actions, masked ones included.
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return config, tasks, layout, model


def _collected(data: dict, steps: int):
    """Config, layout, model (seeded), a collector that has stepped ``steps`` times on every
    task, and a learner: the start of every test that trains on real collected data."""
    config = config_from_dict(data)
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(steps):
        collector.step(model, list(range(len(tasks))))
    return config, layout, model, collector, Learner(model, layout, config, torch.device("cpu"))


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
@pytest.mark.parametrize("explore", [True, False])
def test_masked_actions_are_never_chosen_nor_targeted(algorithm, explore):
    config, tasks, layout, model = _setup(algorithm)
    histories = {t: ContextHistory(layout.pad_obs(t, EnvBatch(task, 6, seed=t).obs), 2) for t, task in enumerate(tasks)}
    rng = np.random.default_rng(0)
    for _ in range(5):
        result = search_actions(model, layout, histories, config.search, 0.99, rng, explore, torch.device("cpu"))
        for t, task_out in result.outputs.items():
            out = task_out.search
            n = tasks[t].spec.num_actions
            assert (out.action < n).all() and (task_out.env_actions == out.action).all()
            assert out.policy_target[:, n:].sum() == 0 and out.visit_counts[:, n:].sum() == 0
            np.testing.assert_allclose(out.policy_target.sum(1), 1.0, rtol=1e-5)


def test_collector_and_learner_step():
    config, tasks, layout, model = _setup()
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(6):
        collector.step(model, [0, 1, 2])
    assert dict(collector.env_steps) == {0: 36, 1: 36, 2: 36}
    assert all(len(r) == 36 for r in collector.replays.values())
    learner = Learner(model, layout, config, torch.device("cpu"))
    batch = learner.sample(collector.replays, [0, 1, 2])
    assert {t: w.obs.shape[0] for t, w in batch.windows.items()} == {0: 5, 1: 5, 2: 5}  # balanced per task
    assert all(w.obs.shape[1] == 3 + 2 + 1 for w in batch.windows.values())
    before = [p.detach().clone() for p in model.parameters()]
    target_before = [p.detach().clone() for p in learner.target.parameters()]
    metrics = learner.update(batch)
    assert all(np.isfinite(v) for v in metrics.values())
    assert {f"task{t}/loss/value" for t in range(3)} <= set(metrics)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert moved > 0
    # EMA: target = (1 - tau) * old_target + tau * new_online.
    tau = config.train.target_tau
    for old, tp, p in zip(target_before, learner.target.parameters(), model.parameters()):
        torch.testing.assert_close(tp, (1 - tau) * old + tau * p.detach(), rtol=1e-5, atol=1e-6)


def test_old_windows_bootstrap_sooner_under_td_age_steps():
    """``replay.td_age_steps``: the learner's value targets are the n-step targets with each
    window's horizon cut by one per ``td_age_steps`` env steps of its age (at least 1)."""
    data = {**SMALL, "replay": {**SMALL["replay"], "td_steps": 3, "td_age_steps": 12}}
    config, _, _, collector, learner = _collected(data, 8)
    batch = learner.sample(collector.replays, [0, 1, 2])
    ages = np.concatenate([w.ages for w in batch.windows.values()])
    horizon = np.clip(3 - ages // 12, 1, 3)
    assert {1, 2, 3} <= set(horizon.tolist())  # 8 steps x 6 envs: ages 6..48 env steps
    losses = learner.compute_losses(batch)
    stack = {name: learner._stack(batch, name) for name in ("rewards", "is_step", "is_obs", "terminal")}
    length = stack["rewards"].shape[1]
    with torch.no_grad():
        actions = torch.as_tensor(learner._stack(batch, "actions"))
        task_ids = torch.as_tensor(np.asarray(batch.task_ids)[batch.row_slot()])
        boot = learner.target.sequence_values(learner._encode(learner.target, batch, length), actions, task_ids).numpy()
    args = (stack["rewards"], stack["is_step"], stack["is_obs"], stack["terminal"], boot, config.train.discount, 3, 4)
    expected, _ = nstep_value_targets(*args, horizon=horizon)
    np.testing.assert_allclose(losses.value_target, expected, rtol=1e-5, atol=1e-6)
    full, _ = nstep_value_targets(*args)
    assert not np.allclose(full, expected)  # the correction changed the old windows' targets


def test_per_task_batch_sizes_are_honoured():
    data = {**SMALL, "tasks": [{"name": "cartpole", "batch_size": 2}, {"name": "minatar-breakout"}, {"name": "minatar-seaquest", "batch_size": 9}]}
    _, _, _, collector, learner = _collected(data, 4)
    batch = learner.sample(collector.replays, [0, 1, 2])
    assert {t: w.obs.shape[0] for t, w in batch.windows.items()} == {0: 2, 1: 5, 2: 9}
    assert batch.row_slot().tolist() == [0] * 2 + [1] * 5 + [2] * 9
    metrics = learner.update(batch)
    assert all(np.isfinite(metrics[f"task{t}/loss/value"]) for t in range(3))


def test_env_batch_steps_only_active_copies():
    tasks = _setup()[1]
    batch = EnvBatch(tasks[1], 3, seed=0)  # minatar-breakout
    obs_before = batch.obs.copy()
    active = np.array([True, False, True])
    for _ in range(4):
        step = batch.step(np.array([1, 1, 1]), active=active)
        assert not step.done[1] and step.reward[1] == 0
    np.testing.assert_array_equal(batch.obs[1], obs_before[1])
    assert batch._lengths.tolist()[1] == 0 and batch._lengths[0] > 0


def test_evaluation_searches_each_copy_for_its_episode_only(monkeypatch):
    """Every copy is searched once per step of its counted episode, never after it."""
    from scalezero.training import evaluator

    _, tasks, layout, model = _setup()
    config = config_from_dict({**SMALL, "train": {**SMALL["train"], "eval_max_steps": 40}})
    searched = {t: 0 for t in range(len(tasks))}
    real = evaluator.search_actions

    def counting(model, layout, histories, *args, **kwargs):
        for t, h in histories.items():
            searched[t] += h.obs.shape[0]
            assert kwargs["legal"][t].shape[0] == h.obs.shape[0]
        return real(model, layout, histories, *args, **kwargs)

    monkeypatch.setattr(evaluator, "search_actions", counting)
    results = evaluator.evaluate(model, tasks, layout, config, torch.device("cpu"), episodes=5)
    for t, r in results.items():
        assert r["episodes"] == 5 and r["length_mean"] <= 40
        assert searched[t] == round(r["length_mean"] * 5)  # the summed episode lengths
    assert len({r["length_mean"] for r in results.values()}) > 1  # tasks ended at different times


def test_learning_rate_falls_linearly_to_its_final_fraction(tmp_path):
    """``train.lr_final_fraction``: lr at ``learning_starts``, lr * fraction at the budget's end,
    linear between (by hand); the run's optimiser ends at the rate of its last update's clock;
    1 keeps the rate constant, and bad values name the field."""
    from tiny_run import tiny

    from scalezero.config import ConfigError, TrainConfig
    from scalezero.training.checkpoint import latest_checkpoint
    from scalezero.training.loop import train

    cfg = TrainConfig(lr=1e-3, lr_final_fraction=0.1, env_steps=1000, learning_starts=100)
    assert [cfg.lr_at(s) for s in (0, 100, 550, 1000, 2000)] == pytest.approx([1e-3, 1e-3, 5.5e-4, 1e-4, 1e-4])
    assert TrainConfig(lr=1e-3).lr_at(5000) == 1e-3
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="train.lr_final_fraction"):
            config_from_dict({**SMALL, "train": {**SMALL["train"], "lr_final_fraction": bad}})
    config = config_from_dict(tiny(lr=1e-3, lr_final_fraction=0.2, checkpoint_every=1000))
    result = train(config, tmp_path / "run", show_progress=False)
    state = json.loads((latest_checkpoint(result.run_dir) / "state.json").read_text())
    assert result.updates > 0
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([2e-4, 2e-4])  # the budget's end


def test_imagined_pass_feeds_the_heads_their_own_predictions():
    """``train.imagined_weight``: a second pass sees the first window latent, then the first
    pass's one-step predictions; its loss is the weighted reward, value and policy
    cross-entropies at positions 1..K against the first pass's targets (recomputed by hand),
    masked where the prediction or the step is missing, and its gradient reaches the dynamics."""
    import torch.nn.functional as F

    data = {**SMALL, "train": {**SMALL["train"], "imagined_weight": 0.7, "latent_weight": 0.0}}
    config = config_from_dict(data)
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(12):  # episodes end inside windows (cartpole under random heads)
        collector.step(model, [0, 1, 2])
    learner = Learner(model, layout, config, torch.device("cpu"))
    batch = learner.sample(collector.replays, [0, 1, 2])
    calls = []
    forward = model.forward_sequence

    def recording(latents, actions, task_ids, step_valid=None):
        calls.append((latents, forward(latents, actions, task_ids, step_valid)))
        return calls[-1][1]

    model.forward_sequence = recording
    result = learner.compute_losses(batch)
    (first_latents, first), (second_latents, second) = calls
    K, train = config.replay.unroll_steps, config.train
    torch.testing.assert_close(second_latents[:, 0], first_latents[:, 0])
    torch.testing.assert_close(second_latents[:, 1:], first.next_latent[:, :K])

    stack = lambda name: np.concatenate([getattr(w, name) for w in batch.windows.values()])
    is_step, is_obs = stack("is_step"), stack("is_obs")
    rewards = torch.as_tensor(stack("rewards")[:, 1 : K + 1])
    support = model.support
    ce = lambda logits, target: -(target * F.log_softmax(logits, -1)).sum(-1)
    reward = ce(second.reward_logits[:, 1:], support.scalar_to_target(rewards))
    value = ce(second.value_logits[:, 1:], support.scalar_to_target(torch.as_tensor(result.value_target[:, 1:])))
    logits = second.policy_logits.masked_fill(~torch.as_tensor(stack("legal")[:, : K + 1]), -1e9)
    policy = ce(logits[:, 1:], torch.as_tensor(stack("policies")[:, 1 : K + 1]))
    step = torch.as_tensor(is_step[:, 1 : K + 1], dtype=torch.float32)
    per_position = train.reward_weight * reward * step + train.value_weight * value * torch.as_tensor(result.value_mask[:, 1:]) + train.policy_weight * policy * step
    mask = torch.as_tensor(is_step[:, :K] & is_obs[:, 1 : K + 1], dtype=torch.float32)
    assert mask.sum() > 0 and (mask == 0).any()  # some predictions are missing (episode ends)
    slot = torch.as_tensor(batch.row_slot())
    by_hand = torch.stack([(per_position * mask)[slot == i].sum() / mask[slot == i].sum() for i in range(3)])
    torch.testing.assert_close(result.per_task["imagined"], by_hand, rtol=1e-5, atol=1e-6)
    # With the next-latent loss off, the dynamics head learns from the imagined pass alone.
    model.forward_sequence = forward
    learner.compute_losses(batch).total.backward()
    assert model.heads.next_latent.head.net[-1].weight.grad.abs().sum() > 0


def test_dropout_never_reaches_search_or_targets():
    """With ``model.dropout`` the online network trains with dropout, but a search of the same
    context gives the same result every time (and leaves the model's mode as it was), and the
    target network's values are deterministic."""
    data = {**SMALL, "model": {**SMALL["model"], "dropout": 0.5}}
    config = config_from_dict(data)
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    for p in model.heads.parameters():
        torch.nn.init.normal_(p, std=0.5)
    model.train()
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(8):
        collector.step(model, [0, 1, 2])
    histories = {t: collector.histories[t] for t in (0, 1, 2)}
    runs = [search_actions(model, layout, histories, config.search, 0.99, np.random.default_rng(1), explore=False, device=torch.device("cpu")) for _ in range(2)]
    for t in (0, 1, 2):
        np.testing.assert_array_equal(runs[0].outputs[t].search.policy_target, runs[1].outputs[t].search.policy_target)
    assert model.training
    learner = Learner(model, layout, config, torch.device("cpu"))
    batch = learner.sample(collector.replays, [0, 1, 2])
    first, second = learner.compute_losses(batch), learner.compute_losses(batch)
    np.testing.assert_array_equal(first.value_target, second.value_target)  # target network: no dropout
    assert not torch.equal(first.total, second.total)  # the online pass does drop


def test_reset_shrinks_and_perturbs_the_online_network_only():
    """``train.reset_every``: after that many updates the heads equal a fresh model's (built
    from the seed and the reset count), every other weight is ``keep`` old + ``1 - keep``
    fresh, the optimiser's moments are gone and the target network is untouched."""
    import copy

    from scalezero.model import WorldModel

    data = {**SMALL, "train": {**SMALL["train"], "reset_every": 2, "reset_keep": 0.25, "seed": 3}}
    config, layout, model, collector, learner = _collected(data, 4)
    learner.update(learner.sample(collector.replays, [0, 1, 2]))
    assert learner.optimizer.state  # moments exist after the first (non-reset) update
    # The second update's step, replayed by hand on copies, then the reset by hand.
    batch = learner.sample(collector.replays, [0, 1, 2])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    target_before = {n: p.detach().clone() for n, p in learner.target.named_parameters()}
    shadow = Learner(build_model(config, layout, torch.device("cpu")), layout, config, torch.device("cpu"))
    shadow.model.load_state_dict(model.state_dict())
    shadow.target.load_state_dict(learner.target.state_dict())
    shadow.optimizer.load_state_dict(copy.deepcopy(learner.optimizer.state_dict()))  # not sharing step counters
    shadow.updates = learner.updates
    shadow.config = config_from_dict({**data, "train": {**data["train"], "reset_every": 0}})
    shadow.update(batch)
    learner.update(batch)
    assert learner.updates == 2 and not learner.optimizer.state
    with torch.random.fork_rng():
        torch.manual_seed(3 * 10_007 + 1)
        fresh = dict(WorldModel(config.resolved_model(), layout).named_parameters())
    stepped = dict(shadow.model.named_parameters())
    heads = moved = 0
    for name, param in model.named_parameters():
        if name.startswith(("heads.value.", "heads.reward.", "heads.policy.")):
            heads += 1
            torch.testing.assert_close(param, fresh[name])
        else:
            torch.testing.assert_close(param, 0.25 * stepped[name] + 0.75 * fresh[name])
        moved += not torch.equal(param, before[name])
    assert heads >= 6 and moved > len(before) // 2
    for name, param in learner.target.named_parameters():  # the EMA moved as usual, no reset
        torch.testing.assert_close(param, dict(shadow.target.named_parameters())[name])
        torch.testing.assert_close(param, 0.95 * target_before[name] + 0.05 * stepped[name])


def test_reset_target_hold_keeps_the_target_still_after_each_reset():
    """``train.reset_target_hold: 2`` with resets every 3 updates: the target moves at updates
    1-3 (the EMA precedes the reset at 3), stays still at 4-5, moves at 6 and stays at 7-8."""
    data = {**SMALL, "train": {**SMALL["train"], "reset_every": 3, "reset_target_hold": 2}}
    _, _, _, collector, learner = _collected(data, 4)
    moved = []
    for _ in range(8):
        before = [p.detach().clone() for p in learner.target.parameters()]
        learner.update(learner.sample(collector.replays, [0, 1, 2]))
        moved.append(any(not torch.equal(a, b) for a, b in zip(before, learner.target.parameters(), strict=True)))
    assert moved == [True, True, True, False, False, True, False, False]


def test_reset_is_refused_under_lora_stages():
    from scalezero.config import ConfigError

    with pytest.raises(ConfigError, match="train.reset_every"):
        config_from_dict({**SMALL, "model": {**SMALL["model"], "lora_stages": 2}, "train": {**SMALL["train"], "reset_every": 10}})
    with pytest.raises(ConfigError, match="train.reset_keep"):
        config_from_dict({**SMALL, "train": {**SMALL["train"], "reset_keep": 1.0}})
    with pytest.raises(ConfigError, match="train.reset_target_hold"):
        config_from_dict({**SMALL, "train": {**SMALL["train"], "reset_every": 10, "reset_target_hold": 10}})
