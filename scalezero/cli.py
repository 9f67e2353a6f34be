"""Command line: ``scalezero train``, ``eval``, ``report``, ``play`` and ``tasks``.

User mistakes (unknown task or suite, bad value, missing dependency) end with one line
naming what was wrong and what is allowed, and exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from scalezero.config import Config, ConfigError, TaskEntry, available_suites, load_config, load_suite, with_overrides
from scalezero.errors import CheckpointError


def _check_flag(flag: str, value: int | None, low: int, high: int | None = None) -> None:
    """Refuse a numeric flag outside [low, high) with one line naming it."""
    if value is None or (value >= low and (high is None or value < high)):
        return
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {'2**32' if high == 2**32 else high})"
    raise ConfigError(f"{flag} {value} is not allowed; expected {allowed}")


def _config_for_task(name: str) -> Config:
    """A suite of one: the first shipped suite that lists ``name`` supplies the settings."""
    from scalezero.tasks import available_tasks, unknown_task_message

    if name not in available_tasks():
        raise ConfigError(unknown_task_message(name))
    for suite in available_suites():
        config = load_suite(suite)
        for entry in config.tasks:
            if entry.name == name:
                return replace(config, tasks=(entry,), suite=name)
    return replace(load_suite("cartpole"), tasks=(TaskEntry(name=name),), suite=name).validate()


def _train(args: argparse.Namespace) -> int:
    from scalezero.api import train_and_report
    from scalezero.training.loop import TrainingInterrupted
    from scalezero.training.run_dir import claim_run_dir, default_run_dir

    _check_flag("--seed", args.seed, 0, 2**32)
    _check_flag("--steps", args.steps, 1)
    _check_flag("--nproc", args.nproc, 1)
    if args.resume:
        if args.suite or args.task or args.set:
            raise ConfigError("--resume DIR continues a run with its own config; do not also give --suite, --task or --set")
        run = Path(args.resume)
        if not (run / "config.yaml").exists():
            raise ConfigError(f"{run} is not a run directory (no config.yaml)")
        config = load_config(run / "config.yaml")
        if args.seed is not None and args.seed != config.train.seed:
            raise ConfigError(f"--seed {args.seed} with --resume: the run {run} has seed {config.train.seed}, and resuming keeps it; start a new run (--out) for another seed")
    elif bool(args.suite) == bool(args.task):
        raise ConfigError("give exactly one of --suite NAME, --task NAME or --resume DIR")
    else:
        config = load_suite(args.suite) if args.suite else _config_for_task(args.task)
    overrides = {}
    if args.steps is not None:
        overrides["env_steps"] = args.steps
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.device is not None:
        overrides["device"] = args.device
    if overrides:
        config = with_overrides(config, "train", **overrides)
    for section, values in parse_overrides(args.set or []).items():
        config = with_overrides(config, section, **values)
    if args.resume:
        if args.overwrite:
            raise ConfigError("--overwrite starts a new run; it cannot go with --resume")
        out = Path(args.resume)
    else:
        out = Path(args.out) if args.out else default_run_dir(config.suite, config.train.seed)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if not args.resume:
            claim_run_dir(out, args.overwrite)
        return _launch(args, out)
    try:
        train_and_report(config, out, show_progress=not args.quiet, resume=bool(args.resume), overwrite=args.overwrite)
    except TrainingInterrupted as exc:
        print(f"scalezero: {exc}; continue with: scalezero train --resume {out}", file=sys.stderr)
        return 130
    return 0


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``section.key=value`` strings -> {section: {key: value}}; values are read as YAML
    (``0.5``, ``true``, ``[a, b]``), so they reach the config with their types; ``2e-4``, a
    string to YAML 1.1, is read as the number it looks like."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot or not section or not key or "." in key:
            raise ConfigError(f"--set {item!r} is not allowed; expected section.key=value, e.g. train.replay_ratio=0.5")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc.problem})") from None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out.setdefault(section, {})[key] = value
    return out


def _launch(args: argparse.Namespace, out: Path) -> int:
    """Start ``args.nproc`` local processes of this same command through torch.distributed.run."""
    argv = ["train", "--out", str(out)] if not args.resume else ["train", "--resume", str(out)]
    for flag in ("suite", "task", "steps", "seed", "device"):
        value = getattr(args, flag)
        if value is not None and not (flag in ("suite", "task") and args.resume):
            argv += [f"--{flag}", str(value)]
    if args.set:
        argv += ["--set", *args.set]
    if args.quiet:
        argv.append("--quiet")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}", "-m", "scalezero.cli", *argv]
    return subprocess.call(command)


def _eval(args: argparse.Namespace) -> int:
    import torch

    from scalezero.api import load_agent

    _check_flag("--episodes", args.episodes, 1)
    _check_flag("--threads", args.threads, 1)
    run = Path(args.run)
    if not (run / "config.yaml").exists():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    config = load_config(run / "config.yaml")
    agent = load_agent(run, device=args.device or config.train.device, threads=args.threads)
    torch.manual_seed(config.train.seed)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]eval"), BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn("episodes"), TimeElapsedColumn()) as bar:
        job = bar.add_task("eval", total=(args.episodes or config.train.eval_episodes) * len(agent.tasks))
        named = agent.evaluate(args.episodes, on_episode=lambda done, _: bar.update(job, completed=done))
    for name, r in named.items():
        print(f"{name:28s} return {r['return_mean']:9.2f} ± {r['return_std']:.2f}  ({int(r['episodes'])} episodes)")
    (run / "eval.json").write_text(json.dumps({"checkpoint": agent.checkpoint.name, "results": named}, indent=1))
    print(f"written: {run / 'eval.json'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from scalezero.report import write_report

    html = write_report(list(args.run), out=args.out)
    print(f"written: {html} (self-contained) and {html.with_suffix('.md')}")
    return 0


def _play(args: argparse.Namespace) -> int:
    from scalezero.play import play

    _check_flag("--fps", args.fps, 1)
    _check_flag("--max-steps", args.max_steps, 1)
    _check_flag("--seed", args.seed, 0, 2**32)
    _check_flag("--threads", args.threads, 1)
    written = play(args.run, args.task, seed=args.seed, max_steps=args.max_steps, fps=args.fps, device=args.device, threads=args.threads)
    print(f"{args.task}: return {written['return']:.3f} in {written['length']} steps")
    for key in ("gif", "transcript"):
        if key in written:
            print(f"written: {written[key]}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from scalezero.tasks import task_families

    families = task_families()
    if args.family:
        if args.family not in families:
            raise ConfigError(f"unknown family {args.family!r}; families: {', '.join(sorted(families))}")
        families = {args.family: families[args.family]}
    for family, names in families.items():
        print(f"{family} ({len(names)}): {' '.join(names)}")
    if not args.family:
        print(f"suites: {' '.join(available_suites())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalezero", description="One world model for many tasks: multi-task MuZero-style planning.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one model on a suite (or a single task)")
    t.add_argument("--suite", help=f"suite name ({', '.join(available_suites())}) or a suite .yaml file")
    t.add_argument("--task", help="a single registered task (a suite of one)")
    t.add_argument("--resume", metavar="DIR", help="continue a run from its newest checkpoint (--steps may raise its budget)")
    t.add_argument("--steps", type=int, help="environment steps per task (overrides train.env_steps)")
    t.add_argument("--seed", type=int, help="random seed (overrides train.seed)")
    t.add_argument("--out", help="run directory (default: runs/<suite>-s<seed>-<time>); one that holds a run already is refused")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out (its checkpoints, metrics and reports are deleted)")
    t.add_argument("--device", choices=["cpu", "cuda"], help="overrides train.device")
    t.add_argument("--set", nargs="+", action="extend", metavar="SECTION.KEY=VALUE", help="override any config field, e.g. --set train.replay_ratio=0.5 search.algorithm=gumbel (repeatable: every --set counts)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    t.add_argument("--nproc", type=int, default=1, help="processes on this machine (tasks are split between them; gloo on CPU, NCCL on GPU)")
    t.set_defaults(func=_train)
    e = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--episodes", type=int, help="episodes per task (default: the run's train.eval_episodes)")
    e.add_argument("--device", choices=["cpu", "cuda"])
    e.add_argument("--threads", type=int, help="torch CPU threads (default: the run's train.torch_threads, else half the cores)")
    e.set_defaults(func=_eval)
    r = sub.add_parser("report", help="HTML + Markdown report of one or several finished runs")
    r.add_argument("--run", required=True, action="append", help="run directory (repeat to compare runs or add seeds)")
    r.add_argument("--out", help="output directory (default: the run, or <parent>/report for several runs)")
    r.set_defaults(func=_report)
    p = sub.add_parser("play", help="play one greedy episode of a task and save it (GIF and/or transcript) under DIR/play/")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--task", required=True, help="one of the run's tasks")
    p.add_argument("--seed", type=int, default=0, help="environment seed")
    p.add_argument("--max-steps", type=int, default=2_000, help="stop the episode after this many steps")
    p.add_argument("--fps", type=int, default=15, help="frames per second of the GIF")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the run's train.torch_threads, else half the cores)")
    p.set_defaults(func=_play)
    k = sub.add_parser("tasks", help="list the registered tasks by family, and the shipped suites")
    k.add_argument("--family", help="only this family (atari, classic, dmc, jericho, minatar, mw, textworld)")
    k.set_defaults(func=_tasks)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """Warnings as one line for people at a terminal (no source file or code line)."""
    return f"scalezero: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.func(args)
    except (ConfigError, CheckpointError) as exc:
        print(f"scalezero: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"scalezero: error: missing dependency: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scalezero: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
