"""Python API for notebooks and scripts: train a suite, load a run, act.

    from scalezero import train, load_agent
    run = train("classic", steps=5_000, out="runs/classic")
    agent = load_agent(run.run_dir)
    env = agent.make_env("cartpole"); obs = env.reset()
    action = agent.act(obs, task="cartpole", new_episode=True)

Everything here is a thin layer over the same pieces the ``scalezero`` command uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalezero.config import Config, ConfigError, config_from_dict, load_config, load_suite
from scalezero.training.loop import RunResult


def _resolve_config(suite: str | Config | dict, steps: int | None, seed: int | None, device: str | None, overrides: dict | None) -> Config:
    if isinstance(suite, Config):
        data = suite.to_dict()
    elif isinstance(suite, dict):
        data = dict(suite)
    elif isinstance(suite, (str, Path)):
        data = load_suite(str(suite)).to_dict()
    else:
        raise ConfigError(f"suite must be a suite name, a .yaml path, a Config or a dict, got {type(suite).__name__}")
    for section, values in (overrides or {}).items():
        if section not in ("model", "search", "replay", "train") or not isinstance(values, dict):
            raise ConfigError(f"overrides[{section!r}]: expected a mapping under one of model, search, replay, train")
        data[section] = {**data.get(section, {}), **values}
    train_data = dict(data.get("train", {}))
    for key, value in (("env_steps", steps), ("seed", seed), ("device", device)):
        if value is not None:
            train_data[key] = value
    data["train"] = train_data
    return config_from_dict(data)


def train(
    suite: str | Config | dict = "classic",
    *,
    steps: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Train one model on a suite and return its final evaluation and throughput.

    Args:
        suite: a shipped suite name, a suite ``.yaml`` path, a :class:`Config` or its dict.
        steps, seed, device: shortcuts for ``train.env_steps``, ``train.seed``, ``train.device``.
        out: run directory (default ``runs/<suite>-s<seed>-<time>``, never one used before);
            one that holds a run already is refused unless ``overwrite``.
        overrides: ``{"model": {...}, "train": {...}, ...}`` merged into the suite's sections.
        progress: show the live console.
        overwrite: replace the run in ``out`` (its checkpoints, metrics and reports are deleted).
    """
    from scalezero.training.run_dir import default_run_dir

    config = _resolve_config(suite, steps, seed, device, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(config.suite, config.train.seed)
    return train_and_report(config, run_dir, show_progress=progress, overwrite=overwrite)


def train_and_report(config: Config, run_dir: Path, *, show_progress: bool = True, resume: bool = False, overwrite: bool = False) -> RunResult:
    """Train (``scalezero.training.loop.train``), then write the run's ``report.html`` / ``report.md``
    from the main process. The training loop itself never renders reports, so ``training`` does
    not depend on ``report`` (which reads training's evaluator)."""
    from scalezero.report import write_report
    from scalezero.training.loop import train as train_loop

    result = train_loop(config, run_dir, show_progress=show_progress, resume=resume, overwrite=overwrite)
    if result.is_main:
        report = write_report(run_dir)
        if show_progress:
            from rich import print as rich_print

            rich_print(f"[bold]report:[/bold] {report}")
    return result


class Agent:
    """A trained model ready to act: search-based greedy (or exploring) actions per task.

    ``act`` keeps each task's recent observations and actions as the model's context, the
    way training and evaluation do; pass ``new_episode=True`` on an episode's first
    observation. Observations are those of ``make_env(task)`` (padded here as needed).
    """

    def __init__(self, config: Config, model: torch.nn.Module, tasks: list, layout: Any, device: torch.device, checkpoint: Path) -> None:
        self.config = config
        self.model = model.eval()
        self.layout = layout
        self.device = device
        self.checkpoint = checkpoint
        self._tasks = tasks
        self._ids = {t.spec.name: i for i, t in enumerate(tasks)}
        self._histories: dict[int, Any] = {}
        self._last: dict[int, np.ndarray] = {}
        self._rng = np.random.default_rng(config.train.seed)

    @property
    def tasks(self) -> list[str]:
        """Names of the tasks the model was trained on."""
        return list(self._ids)

    def _task_id(self, task: str) -> int:
        if task not in self._ids:
            from scalezero.tasks import UnknownTaskError

            raise UnknownTaskError(f"unknown task {task!r} for this agent; its tasks: {', '.join(self._ids)}")
        return self._ids[task]

    def make_env(self, task: str, seed: int = 0, evaluation: bool = False) -> Any:
        """A fresh copy of ``task``'s environment (``reset() -> obs``, ``step(a) -> obs, r, term, trunc``);
        ``evaluation`` gives the version evaluation plays (e.g. Atari without the end of
        episode at a lost life), where the task has one."""
        spec_task = self._tasks[self._task_id(task)]
        factory = (spec_task.make_eval_env if evaluation else None) or spec_task.make_env
        return factory(seed)

    def act(
        self, obs: np.ndarray, task: str, new_episode: bool = False, greedy: bool = True, legal: np.ndarray | None = None
    ) -> int | np.ndarray:
        """The searched action for one observation or a batch ``[N, *shape]`` of observations
        from ``N`` parallel episodes. Discrete tasks: an int (``[N]`` ints for a batch);
        continuous tasks: a vector in ``[-1, 1]^action_dim`` (``[N, action_dim]``).
        ``legal`` (``[num_actions]`` or ``[N, num_actions]`` bool) restricts a discrete task to
        the actions legal now, e.g. an env's ``legal_actions()``."""
        from scalezero.training.acting import ContextHistory, search_actions

        t = self._task_id(task)
        shape = tuple(self.layout.specs[t].obs_shape)
        obs = np.asarray(obs)
        single = obs.shape == shape
        if not single and obs.shape[1:] != shape:
            raise ValueError(f"task {task!r} observations have shape {shape} (or [N, *{shape}]), got {obs.shape}")
        batch = self.layout.pad_obs(t, obs[None] if single else obs)
        history = self._histories.get(t)
        if new_episode or history is None or history.obs.shape[0] != batch.shape[0]:
            self._histories[t] = ContextHistory(batch, self.config.train.context_steps, self.layout.action_dim)
        else:
            history.advance(self._last[t], batch, np.zeros(batch.shape[0], dtype=bool))
        masks = None
        if legal is not None:
            masks = {t: np.asarray(legal, dtype=bool).reshape(batch.shape[0], -1)}
        result = search_actions(
            self.model, self.layout, {t: self._histories[t]}, self.config.search, self.config.train.discount,
            self._rng, explore=not greedy, device=self.device, legal=masks,
        )  # fmt: skip
        out = result.outputs[t]
        self._last[t] = out.actions
        if self.layout.continuous:
            return out.env_actions[0] if single else out.env_actions
        return int(out.env_actions[0]) if single else out.env_actions

    def evaluate(self, episodes: int | None = 10, on_episode: Any = None) -> dict[str, dict[str, float]]:
        """Greedy evaluation of every task: task name -> return mean/std, length, episodes.
        ``episodes``: per task (None: the run's ``train.eval_episodes``); ``on_episode(done,
        total)`` is called as episodes finish (progress bars)."""
        from scalezero.training.evaluator import evaluate

        results = evaluate(self.model, self._tasks, self.layout, self.config, self.device, episodes=episodes, on_episode=on_episode)
        return {self._tasks[t].spec.name: r for t, r in results.items()}


def inference_threads(config_threads: int = 0) -> int:
    """CPU threads for playing a trained agent (``eval``, ``play``, :func:`load_agent`): the
    run's ``train.torch_threads`` where it names a number, else half the cores (at least 1, at
    most 8). All cores is torch's default and collapses when another process shares them
    (its threads spin waiting for each other): beside one training run, ``scalezero eval``
    of one episode took 13-37 s with 2 threads against 7 s with 1 (5 s idle; BENCHMARKS.md)."""
    if config_threads > 0:
        return int(config_threads)
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def load_agent(run: str | Path, checkpoint: str | Path | None = None, device: str = "cpu", threads: int | None = None) -> Agent:
    """Load a run directory's model (its latest checkpoint, or ``checkpoint``) as an :class:`Agent`.
    ``threads``: torch's CPU threads for this process (None: :func:`inference_threads`)."""
    from scalezero.training.checkpoint import latest_checkpoint, load_checkpoint
    from scalezero.training.setup import build_model, pick_device, resolve_tasks

    run = Path(run)
    if not (run / "config.yaml").exists():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    config = load_config(run / "config.yaml")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 or None, got {threads}")
    torch.set_num_threads(threads or inference_threads(config.train.torch_threads))
    torch_device = pick_device(device)
    tasks, layout = resolve_tasks(config)
    model = build_model(config, layout, torch_device)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run)
    load_checkpoint(path, model)
    return Agent(config, model, tasks, layout, torch_device, path)
