"""The command line: user mistakes give one clear line and exit 2; a tiny run trains, reports and evaluates."""

import json

import pytest
import torch
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
        (["train", "--task", "cartpole", "--steps", "0"], "--steps 0 is not allowed; expected an integer >= 1"),
        (["train", "--task", "cartpole", "--set", "train.replay_ratio"], "expected section.key=value"),
        (["train", "--task", "cartpole", "--set", "train.replay_rato=1"], "unknown key(s) ['replay_rato'] in train"),
        (["train", "--task", "cartpole", "--set", "serch.algorithm=gumbel"], "unknown config section 'serch'"),
        (["train", "--task", "cartpole", "--set", "search.algorithm=alpha"], "search.algorithm = 'alpha' is not allowed"),
        (["eval", "--run", "/nonexistent/run"], "is not a run directory"),
        (["tasks", "--family", "atar"], "unknown family 'atar'; families: atari, classic, dmc, jericho, minatar, mw, textworld"),
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
    assert main(["tasks", "--family", "textworld"]) == 0
    assert capsys.readouterr().out.strip() == "textworld (4): textworld-easy textworld-expert textworld-hard textworld-medium"


def test_tiny_multitask_run_end_to_end(tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    argv = ["train", "--suite", str(suite), "--out", str(run), "--seed", "3", "--set", "search.num_simulations=3", "train.lr=2e-4",
            "--set", "train.value_weight=0.75", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["search"]["num_simulations"] == 3 and saved["train"]["lr"] == 2e-4 and saved["train"]["seed"] == 3
    assert saved["train"]["value_weight"] == 0.75  # a second --set adds to the first
    for name in ("config.yaml", "eval.csv", "metrics.json", "report.md", "learning_curves.png"):
        assert (run / name).exists(), name
    assert (run / "learning_curves.png").stat().st_size > 1000
    metrics = json.loads((run / "metrics.json").read_text())
    summary = metrics["summary"]
    assert summary["env_steps_per_task"] == {"cartpole": 96, "minatar-breakout": 96}
    assert summary["updates"] > 0
    # What the same seed's numbers depend on beyond the config: the kernels' instruction set.
    assert summary["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert summary["machine"]["torch"] == torch.__version__
    phases = summary["phase_s"]
    assert set(phases) == {"collect", "sample", "update", "evaluate", "checkpoint"} and min(phases.values()) > 0
    assert sum(phases.values()) <= summary["wall_s"] + 0.005 * (len(phases) + 1)  # each figure rounded to 0.01 s
    assert {row["env_steps"] for row in metrics["eval"]} == {48, 96}
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["ckpt_48", "ckpt_96"]
    report = (run / "report.md").read_text()
    assert "| cartpole |" in report and "| minatar-breakout |" in report
    assert main(["eval", "--run", str(run), "--episodes", "2", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
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
    # A second run into the same directory is refused, and nothing of this one is touched.
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["train", "--suite", str(suite), "--out", str(run), "--seed", "4", "--quiet"]) == 2
    assert "already holds a run; continue it with: scalezero train --resume" in capsys.readouterr().err
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--seed", "7"]) == 2
    assert "has seed 3, and resuming keeps it" in capsys.readouterr().err
    # --overwrite replaces it: the old checkpoints, metrics and reports go, the suite file stays.
    (run / "keep.txt").write_text("mine")
    steps = ["--set", "train.env_steps=48", "train.checkpoint_every=48", "train.eval_every=48"]
    assert main(["train", "--suite", str(suite), "--out", str(run), "--seed", "4", "--overwrite", "--quiet", *steps]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_48"]
    assert not (run / "eval.json").exists() and not (run / "play").exists() and (run / "keep.txt").read_text() == "mine"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 4


def test_default_run_directories_never_collide(tmp_path):
    from scalezero.training.run_dir import default_run_dir

    first, second = default_run_dir("cartpole", 0, tmp_path), default_run_dir("cartpole", 0, tmp_path)
    assert first != second and first.name.startswith("cartpole-s0-") and second.name == f"{first.name}-2"


FILE_MISTAKES = {
    "not_yaml.yaml": ("text", "tasks: [cartpole\nmodel: {embed_dim: 32", "is not valid YAML at line"),
    "a_list.yaml": ("text", "- cartpole\n- acrobot\n", "must be a YAML mapping of sections (tasks, suite, model"),
    "a_string.yaml": ("text", "cartpole\n", "got a str"),
    "binary.yaml": ("bytes", bytes(range(256)) * 4, "is not a text file (expected YAML)"),
    "infinite.yaml": ("text", "tasks: [cartpole]\ntrain: {replay_ratio: .inf}\n", "train.replay_ratio must be a finite number, got inf"),
    "misspelt.yaml": ("text", "tasks: [minatar-breakot]\n", "unknown task 'minatar-breakot'; did you mean minatar-breakout"),
    "words.yaml": ("text", "tasks: [cartpole]\ntrain: {lr: fast}\n", "train.lr must be a number, got the text 'fast' (YAML numbers look like"),
    "syntax.yaml": ("text", "tasks: [{name: mine, entry_point: bad_syntax.py:Env, target_return: 1}]\n", "SyntaxError at line 2"),
    "raising.yaml": ("text", "tasks: [{name: mine, entry_point: raising.py:Env, target_return: 1}]\n", "failed: RuntimeError at line 3: no display"),
}


@pytest.mark.parametrize("name", sorted(FILE_MISTAKES))
def test_suite_file_mistakes_are_one_line(name, tmp_path, capsys):
    (tmp_path / "bad_syntax.py").write_text("import gymnasium\ndef Env(:\n    pass\n")
    (tmp_path / "raising.py").write_text("import os\n\nraise RuntimeError('no display')\n")
    kind, content, needle = FILE_MISTAKES[name]
    path = tmp_path / name
    path.write_bytes(content) if kind == "bytes" else path.write_text(content)
    assert main(["train", "--suite", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1
    if name in ("not_yaml.yaml", "a_list.yaml", "a_string.yaml", "binary.yaml"):
        assert str(path) in err  # the file is named


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--task", "cartpole", "--seed", "-1"], "--seed -1 is not allowed; expected an integer in [0, 2**32)"),
        (["train", "--task", "cartpole", "--seed", str(2**32)], f"--seed {2**32} is not allowed"),
        (["train", "--suite", "no/such/suite.yaml"], "suite file no/such/suite.yaml: no such file"),
        (["train", "--suite", "missing.yaml"], "suite file missing.yaml: no such file"),
        (["eval", "--run", "somewhere", "--episodes", "-3"], "--episodes -3 is not allowed; expected an integer >= 1"),
        (["play", "--run", "somewhere", "--task", "cartpole", "--fps", "0"], "--fps 0 is not allowed; expected an integer >= 1"),
        (["play", "--run", "somewhere", "--task", "cartpole", "--max-steps", "0"], "--max-steps 0 is not allowed"),
        (["play", "--run", "somewhere", "--task", "cartpole", "--threads", "0"], "--threads 0 is not allowed; expected an integer >= 1"),
        (["eval", "--run", "somewhere", "--threads", "-1"], "--threads -1 is not allowed"),
    ],
)
def test_flag_mistakes_are_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    from scalezero.config import load_suite

    path = tmp_path / "lr.yaml"
    path.write_text("tasks: [cartpole]\ntrain: {lr: 1e-4, weight_decay: 5e-5}\n")  # YAML 1.1 reads these as text
    config = load_suite(str(path))
    assert config.train.lr == 1e-4 and config.train.weight_decay == 5e-5


def test_internal_errors_stay_tracebacks(monkeypatch):
    from scalezero import cli

    def broken(args):
        raise KeyError("collector")  # a bug, not a user mistake: it must not read as one

    monkeypatch.setattr(cli, "_tasks", broken)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["tasks"].set_defaults(func=broken)
    with pytest.raises(KeyError, match="collector"):
        main(["tasks"])


def test_inference_threads_default_leaves_cores_for_others(monkeypatch):
    from scalezero.api import inference_threads

    assert inference_threads(3) == 3  # the run's train.torch_threads, where it names a number
    for cores, expected in [(1, 1), (2, 1), (16, 8), (64, 8)]:
        monkeypatch.setattr("os.cpu_count", lambda c=cores: c)
        assert inference_threads(0) == expected
