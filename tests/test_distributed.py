"""Two gloo ranks on CPU (``scalezero train --nproc 2``): tasks split between the ranks, every
rank ends with the same parameters, and all agree on the solved set and the DPS stage."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from scalezero.training.checkpoint import latest_checkpoint
from scalezero.training.distributed import partition

SUITE = {
    # CartPole (rank 0) is solved at the first evaluation; Breakout (rank 1) trains on while
    # rank 0 joins every update with zero gradients.
    "tasks": [{"name": "cartpole", "target_return": 5.0}, "minatar-breakout"],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8,
              "moe_num_experts": 2, "lora_stages": 2, "lora_rank": 2},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {"env_steps": 160, "num_envs": 4, "batch_size": 4, "learning_starts": 40, "replay_ratio": 0.5, "eval_every": 80,
              "eval_episodes": 2, "eval_max_steps": 20, "checkpoint_every": 160, "torch_threads": 1},
    "dps": {"enabled": True, "min_stage0_updates": 5, "max_stage_updates": 10},
}  # fmt: skip


def test_partition_is_contiguous_and_balanced():
    assert partition(5, 2) == [[0, 1, 2], [3, 4]]
    assert partition(4, 4) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="3 processes need at least 3 tasks"):
        partition(2, 3)


def test_two_ranks_keep_identical_parameters_and_agree_on_dps(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "scalezero.cli", "train", "--suite", str(suite), "--out", str(run), "--nproc", "2", "--quiet"],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(str(latest_checkpoint(run) / "model.safetensors"))
    rank1 = load_file(str(latest_checkpoint(run / "rank1") / "model.safetensors"))
    model_keys = [k for k in rank0 if k.startswith(("model.", "target."))]
    assert model_keys and all(torch.equal(rank0[k], rank1[k]) for k in model_keys)
    s0 = json.loads((run / "metrics.json").read_text())["summary"]
    s1 = json.loads((run / "rank1" / "metrics.json").read_text())["summary"]
    assert s0["processes"] == 2 and s0["updates"] == s1["updates"] > 0
    assert s0["env_steps_per_task"] == {"cartpole": 80, "minatar-breakout": 160}  # gathered from both ranks
    assert s0["dps"]["solved"] == s1["dps"]["solved"] == ["cartpole"]
    assert s0["dps"]["stage"] == s1["dps"]["stage"] == 1
    assert s0["dps"]["history"] == s1["dps"]["history"]
    assert set(s0["final_eval"]) == {"cartpole", "minatar-breakout"}  # each rank evaluated its own, both see all
