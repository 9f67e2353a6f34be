"""The command line: user mistakes give one clear line and exit 2; a tiny run trains, reports and evaluates."""

import json

import pytest
import yaml

from scalezero.cli import main

TINY = {
    "tasks": [{"name": "cartpole"}, {"name": "minatar-breakout"}],
    "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
    "search": {"num_simulations": 4},
    "replay": {"unroll_steps": 2, "td_steps": 2},
    "train": {
        "env_steps": 96,
        "num_envs": 4,
        "batch_size": 8,
        "learning_starts": 40,
        "eval_every": 48,
        "eval_episodes": 2,
        "eval_max_steps": 20,
        "checkpoint_every": 48,
    },
}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--task", "pongg"], "unknown task 'pongg'; did you mean atari-pong"),
        (["train", "--suite", "atari999"], "unknown suite 'atari999'; did you mean atari8"),
        (["train", "--suite", "cartpole", "--task", "cartpole"], "exactly one of --suite NAME, --task NAME or --resume DIR"),
        (["train", "--task", "cartpole", "--steps", "0"], "train.env_steps = 0 is not allowed"),
        (["train", "--task", "cartpole", "--set", "train.replay_ratio"], "expected section.key=value"),
        (["train", "--task", "cartpole", "--set", "train.replay_rato=1"], "unknown key(s) ['replay_rato'] in train"),
        (["train", "--task", "cartpole", "--set", "serch.algorithm=gumbel"], "unknown config section 'serch'"),
        (["train", "--task", "cartpole", "--set", "search.algorithm=alpha"], "search.algorithm = 'alpha' is not allowed"),
        (["eval", "--run", "/nonexistent/run"], "is not a run directory"),
        (["tasks", "--family", "atar"], "unknown family 'atar'; families: atari, classic, dmc, minatar, mw, text"),
    ],
)
def test_user_errors_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_tasks_lists_every_registered_task_by_family(capsys):
    from scalezero.tasks import available_tasks

    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [name for line in lines if not line.startswith("suites:") for name in line.split(": ", 1)[1].split()]
    assert sorted(listed) == available_tasks()
    assert "minatar (5): minatar-asterix minatar-breakout minatar-freeway minatar-seaquest minatar-space_invaders" in lines
    assert main(["tasks", "--family", "text"]) == 0
    assert capsys.readouterr().out.strip() == "text (4): text-easy text-expert text-hard text-medium"


def test_tiny_multitask_run_end_to_end(tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    argv = ["train", "--suite", str(suite), "--out", str(run), "--seed", "3", "--set", "search.num_simulations=3", "train.lr=2e-4", "--quiet"]
    assert main(argv) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["search"]["num_simulations"] == 3 and saved["train"]["lr"] == 2e-4 and saved["train"]["seed"] == 3
    for name in ("config.yaml", "eval.csv", "metrics.json", "report.md", "learning_curves.png"):
        assert (run / name).exists(), name
    assert (run / "learning_curves.png").stat().st_size > 1000
    metrics = json.loads((run / "metrics.json").read_text())
    summary = metrics["summary"]
    assert summary["env_steps_per_task"] == {"cartpole": 96, "minatar-breakout": 96}
    assert summary["updates"] > 0
    phases = summary["phase_s"]
    assert set(phases) == {"collect", "sample", "update", "evaluate", "checkpoint"} and min(phases.values()) > 0
    assert sum(phases.values()) <= summary["wall_s"] + 0.005 * (len(phases) + 1)  # each figure rounded to 0.01 s
    assert {row["env_steps"] for row in metrics["eval"]} == {48, 96}
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["ckpt_48", "ckpt_96"]
    report = (run / "report.md").read_text()
    assert "| cartpole |" in report and "| minatar-breakout |" in report
    assert main(["eval", "--run", str(run), "--episodes", "2"]) == 0
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["checkpoint"] == "ckpt_96"
    assert set(evaluated["results"]) == {"cartpole", "minatar-breakout"}
    # Watch it: an image task gives a GIF and a transcript, a vector task a transcript.
    assert main(["play", "--run", str(run), "--task", "minatar-breakout", "--max-steps", "30"]) == 0
    gif, text = run / "play" / "minatar-breakout-seed0.gif", run / "play" / "minatar-breakout-seed0.txt"
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames >= 2 and image.size == (200, 200)
    assert text.read_text().startswith("minatar-breakout, seed 0: return")
    assert main(["play", "--run", str(run), "--task", "cartpole", "--max-steps", "30"]) == 0
    lines = (run / "play" / "cartpole-seed0.txt").read_text().splitlines()
    assert lines[2].startswith("step     1  action") and not (run / "play" / "cartpole-seed0.gif").exists()
    assert main(["play", "--run", str(run), "--task", "pong"]) == 2
