"""The DPS controller's rules on scripted evaluations, and a run where a solved task stops
collecting and leaves learner batches while the others go on."""

import json

from scalezero.config import DPSConfig, config_from_dict
from scalezero.tasks.base import TaskSpec
from scalezero.training.dps import DPSController
from scalezero.training.loop import train

SPECS = [TaskSpec(f"t{i}", "vector", (2,), 2, target_return=1.0, random_return=0.0) for i in range(5)]


def _returns(solved: set[int]) -> dict[int, float]:
    return {t: (1.0 if t in solved else 0.1) for t in range(5)}


def test_switch_on_enough_newly_solved_tasks_after_min_stage0():
    dps = DPSController(SPECS, num_stages=3, cfg=DPSConfig(enabled=True, min_stage0_updates=100, max_stage_updates=50))
    assert dps.observe(_returns({0, 1, 2}), updates=60, env_steps=600) is None  # stage 0 not long enough yet
    assert dps.solved == {0, 1, 2} and dps.active_tasks() == [3, 4]
    assert dps.threshold() == 3  # ceil(5 unsolved / 2 stages to come)
    assert dps.maybe_switch(updates=99, env_steps=990) is None
    assert dps.maybe_switch(updates=100, env_steps=1000) == 1
    assert dps.threshold() == 2  # ceil(2 unsolved at the stage's start / 1 stage to come)
    assert dps.observe(_returns({0, 1, 2, 3}), updates=120, env_steps=1200) is None  # 1 new < 2
    assert dps.maybe_switch(updates=149, env_steps=1490) is None
    assert dps.maybe_switch(updates=150, env_steps=1500) == 2  # stage 1 ran max_stage_updates
    assert dps.maybe_switch(updates=10_000, env_steps=10**5) is None  # the last stage never ends
    assert [h["to"] for h in dps.history if h["event"] == "stage"] == [1, 2]


def test_stage0_timeout_counts_from_min_stage0():
    dps = DPSController(SPECS, num_stages=2, cfg=DPSConfig(enabled=True, min_stage0_updates=100, max_stage_updates=30))
    assert dps.maybe_switch(updates=100, env_steps=0) is None  # not at min_stage0 itself
    assert dps.maybe_switch(updates=129, env_steps=0) is None
    assert dps.maybe_switch(updates=130, env_steps=0) == 1
    assert "ran" in dps.history[-1]["reason"]


def test_reopen_and_state_round_trip():
    cfg = DPSConfig(enabled=True, min_stage0_updates=0, max_stage_updates=10, reopen_below=0.5)
    dps = DPSController(SPECS, num_stages=4, cfg=cfg)
    dps.observe(_returns({0, 3}), updates=5, env_steps=50)
    dps.observe({0: 0.6, 3: 0.2}, updates=6, env_steps=60)  # progress 0.6 stays solved, 0.2 rejoins
    assert dps.solved == {0}
    assert [h["event"] for h in dps.history if h.get("task") == "t3"] == ["solved", "reopened"]
    clone = DPSController(SPECS, num_stages=4, cfg=cfg)
    clone.load_state_dict(json.loads(json.dumps(dps.state_dict())))
    assert clone.state_dict() == dps.state_dict()
    never = DPSController(SPECS, num_stages=4, cfg=DPSConfig(enabled=True))
    never.observe(_returns({0}), 0, 0)
    never.observe({0: -5.0}, 1, 10)
    assert never.solved == {0}  # reopen_below 0: solved for good


def test_solved_task_stops_collecting_and_leaves_batches(tmp_path):
    data = {
        # CartPole's target is below any episode's return: solved at the first evaluation.
        "tasks": [{"name": "cartpole", "target_return": 5.0}, {"name": "minatar-breakout", "target_return": 1000.0}],
        "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "lora_stages": 2, "lora_rank": 2},
        "search": {"num_simulations": 4},
        "replay": {"unroll_steps": 2, "td_steps": 2},
        "train": {"env_steps": 200, "num_envs": 4, "batch_size": 4, "learning_starts": 40, "replay_ratio": 1.0,
                  "eval_every": 120, "eval_episodes": 2, "eval_max_steps": 30, "checkpoint_every": 200},
        "dps": {"enabled": True, "min_stage0_updates": 20, "max_stage_updates": 100},
    }  # fmt: skip
    train(config_from_dict(data), tmp_path / "run", show_progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    summary = metrics["summary"]
    assert summary["env_steps_per_task"] == {"cartpole": 120, "minatar-breakout": 200}  # budget accounting
    assert summary["dps"]["solved"] == ["cartpole"]
    solved_at = next(h["updates"] for h in summary["dps"]["history"] if h["event"] == "solved")
    later = [r for r in metrics["train"] if r["updates"] > solved_at and "task1/loss/value" in r]
    assert later and not any("task0/loss/value" in r for r in later)  # no cartpole samples after
    assert any("task0/loss/value" in r for r in metrics["train"] if r["updates"] <= solved_at)
    # One solved task of two is below ceil(2 / 1), so stage 0 ends by time: 20 + 100 updates.
    assert summary["dps"]["stage"] == 1
    switch = next(h for h in summary["dps"]["history"] if h["event"] == "stage")
    assert switch["updates"] == 120 and "ran" in switch["reason"]
    assert [r["dps/stage"] for r in metrics["train"] if "dps/stage" in r][-1] == 1
    final = {r["task"]: r for r in metrics["eval"] if r["env_steps"] == 200}
    assert set(final) == {"cartpole", "minatar-breakout"}  # the solved task is still evaluated
