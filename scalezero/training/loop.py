"""The training loop: collect with search, learn at the replay ratio, evaluate, checkpoint.

Reads top to bottom like the algorithm. Each iteration: every task's env copies take one
step chosen by one batched search; the learner then performs the updates owed by the
replay ratio; evaluation and checkpoints happen at fixed per-task step counts. What each
step does, and the run's parts, live in :class:`~scalezero.training.run.TrainingRun`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from scalezero.config import Config
from scalezero.training.background_eval import BackgroundEvaluator
from scalezero.training.run import TrainingRun
from scalezero.training.setup import build_model, resolve_tasks  # noqa: F401  (the entry points' names, kept here for callers)


@dataclass
class RunResult:
    """What a finished run reports: per-task final evaluation and throughput."""

    run_dir: Path
    final_eval: dict[str, dict[str, float]]
    env_steps: int
    updates: int
    wall_s: float
    is_main: bool = True  # False on the other ranks of a multi-process run


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped training after a final checkpoint (``checkpoint`` is its path)."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"training interrupted; checkpoint written to {checkpoint}")
        self.checkpoint = checkpoint


@contextlib.contextmanager
def _stop_signals():
    """Turn SIGINT/SIGTERM into a flag the loop checks once per iteration (main thread only)."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def request(signum, frame):
        flag["stop"] = True

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train(
    config: Config, run_dir: str | Path, show_progress: bool = True, resume: bool = False, overwrite: bool = False
) -> RunResult:
    """Train one model on the config's suite; write everything to ``run_dir``.

    With ``resume`` the run continues from the newest checkpoint in ``run_dir`` (a damaged
    newest checkpoint is reported and the one before it used). A new run refuses a directory
    that holds a run already, unless ``overwrite`` (:func:`~scalezero.training.run_dir.claim_run_dir`;
    with several processes the launcher claims it). SIGINT/SIGTERM write a final checkpoint and
    raise :class:`TrainingInterrupted`.
    """
    run = TrainingRun(config, Path(run_dir), show_progress, resume, overwrite)
    with run.console, _stop_signals() as stop, _closing(run.background_eval):  # the live display always stops, also on errors
        while run.any_collecting():
            # (train.overlap) The updates owed for the data so far start on a worker thread and
            # run while this step collects with the acting copy.
            learning = run.start_owed_updates()
            # 1. Collect: one step of every copy of every unsolved task still under budget.
            active = run.collecting()
            before = sum(run.steps_of(t) for t in active)
            run.collect(active)
            run.finish_owed_updates(learning)
            run.advance_clock(active, before)
            # 2. Learn: the updates owed by the replay ratio, once every training task has enough
            # data (with overlap, only at the end: the updates owed for the last step).
            if run.acting is None or not run.any_collecting():
                run.learn()
            run.maybe_enter_next_stage()
            # 3. Evaluate (every task, solved ones too) and checkpoint at fixed per-task step counts, and at the end.
            finished = not run.any_collecting()
            run.evaluate_if_due(finished)
            run.checkpoint_if_due(finished)
            if run.sync.any(stop["stop"]) and not finished:
                raise TrainingInterrupted(run.checkpoint_now())
            run.show_progress()

    wall = run.wall()
    summary = run.summary(wall)
    run.logger.write_json(summary)
    run.logger.close()
    updates, is_main = run.learner.updates, run.info.is_main
    result = RunResult(run.run_dir, summary["final_eval"], summary["env_steps_total"], updates, wall, is_main)
    if run.info.is_main:
        run.console.finish(result, run.layout)
    return result


@contextlib.contextmanager
def _closing(background: BackgroundEvaluator | None):
    try:
        yield
    finally:
        if background is not None:
            background.close()
