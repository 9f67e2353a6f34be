"""One training run: its parts (tasks, collector, learner, logger, console, DPS, background
workers) and the steps the loop in :mod:`scalezero.training.loop` takes with them.

The loop says what happens in which order; this module says what each step does. Every
collective call of a multi-process run (``self.sync``) happens in the same order on every
rank, so each method keeps its calls where the loop puts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from pathlib import Path

import torch

from scalezero.config import Config, ConfigError, save_config
from scalezero.training.background_eval import BackgroundEvaluator, EvalPoint, PendingEvaluation
from scalezero.training.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, verify_checkpoint
from scalezero.training.collector import Collector
from scalezero.training.console import TrainingConsole
from scalezero.training.distributed import Sync, broadcast_parameters, env_info, init_from_env, partition
from scalezero.training.dps import DPSController, enter_stage
from scalezero.training.evaluator import evaluate
from scalezero.training.learner import Learner
from scalezero.training.metrics import MetricsLogger
from scalezero.training.overlap import ActingCopy, BackgroundUpdates
from scalezero.training.run_dir import claim_run_dir
from scalezero.training.run_state import LoopState, restore_run, save_run
from scalezero.training.setup import build_model, machine_info, pick_device, resolve_tasks, seed_everything
from scalezero.training.weighting import difficulty_weights, task_progress


class PhaseClock:
    """Seconds this process spends in each phase of the loop, so a slow run says where its time
    goes (``metrics.json`` summary ``phase_s``; a resumed run counts from its resume)."""

    PHASES = ("collect", "sample", "update", "evaluate", "checkpoint")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.last = 0.0
        """Seconds of the phase that ended last."""

    @contextlib.contextmanager
    def __call__(self, phase: str):
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.last = time.perf_counter() - begin
            self.seconds[phase] += self.last

    def summary(self) -> dict[str, float]:
        return {phase: round(value, 2) for phase, value in self.seconds.items()}


class TrainingRun:
    """Everything one run holds, set up from a config and a run directory (new, or resumed from
    its newest loadable checkpoint), and the loop's steps: collect, learn, evaluate, checkpoint."""

    def __init__(self, config: Config, run_dir: Path, show_progress: bool, resume: bool, overwrite: bool) -> None:
        train_cfg = self.train_cfg = config.train
        self.config = config
        self.run_dir = run_dir
        place = env_info()
        if train_cfg.background_eval and place.enabled:
            raise ConfigError("train.background_eval is not supported with several processes (they gather evaluations in step)")
        if not resume and not place.enabled:
            claim_run_dir(run_dir, overwrite)
        run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(train_cfg.seed)
        torch.set_num_threads(train_cfg.torch_threads or _default_threads(train_cfg.overlap))
        self.device = pick_device(train_cfg.device)
        self.tasks, self.layout = resolve_tasks(config)
        self.names = [t.spec.name for t in self.tasks]
        candidates = _resume_points(_rank_dir(run_dir, place.rank)) if resume else []
        save_config(config, run_dir / "config.yaml")  # every rank: machines need not share a disk

        self.all_ids = list(range(len(self.tasks)))
        self.info = info = init_from_env(self.device)
        self.sync = Sync(info, self.device)
        self.own = partition(len(self.tasks), info.world)[info.rank] if info.enabled else self.all_ids
        if info.enabled and train_cfg.cluster_every:
            raise ConfigError(
                "train.cluster_every is not supported with several processes yet (each rank sees only its tasks' gradients)"
            )
        self.rank_dir = _rank_dir(run_dir, info.rank)
        self.model = build_model(config, self.layout, self.device)
        self.collector = Collector(self.tasks, self.layout, config, self.device, task_ids=self.own)
        self.learner = Learner(self.model, self.layout, config, self.device)
        if info.enabled:
            broadcast_parameters(self.model)
            broadcast_parameters(self.learner.target)
            self.learner.distributed = True
        self.logger = MetricsLogger(self.rank_dir, self.names)
        self.console = TrainingConsole(config, self.layout, self.model, self.device, enabled=show_progress and info.is_main)
        specs = [t.spec for t in self.tasks]
        self.dps = DPSController(specs, config.model.lora_stages, config.dps) if config.dps.enabled else None
        if resume:
            self.loop = _restore_newest(candidates, self.learner, self.collector, self.dps, self.logger)
        else:
            self.loop = LoopState(
                next_eval=train_cfg.eval_every, next_ckpt=train_cfg.checkpoint_every, recent_returns={t: [] for t in self.all_ids}
            )
        self.budget = train_cfg.env_steps
        self.start = time.perf_counter() - self.loop.wall_before
        self.phases = PhaseClock()
        self.metrics: dict[str, float] = {}
        """The last update's training scalars."""
        self.nonfinite_in_a_row = 0
        self.stats: dict = {"episodes": [], "search": []}
        """The last collection step's finished episodes and search statistics."""
        self.acting = ActingCopy(self.model) if train_cfg.overlap else None
        self.background_batches: list = []
        """(``train.overlap``) The batches the worker is updating on, for their priorities."""
        self.background_eval = BackgroundEvaluator(config) if train_cfg.background_eval else None
        # Resumed with an evaluation of these weights out: start it again.
        if self.background_eval is not None and self.loop.pending_eval is not None:
            self.background_eval.submit(self.model, self.own, PendingEvaluation.from_state(self.loop.pending_eval))

    # ---- which tasks ----------------------------------------------------------------------

    def steps_of(self, t: int) -> int:
        return self.collector.env_steps[t]

    def training_ids(self) -> list[int]:
        """Every rank's tasks still training (with DPS, the unsolved ones)."""
        return self.dps.active_tasks() if self.dps is not None else self.all_ids

    def local_ids(self) -> list[int]:
        """This rank's tasks still training."""
        return [t for t in self.training_ids() if t in self.own]

    def collecting(self) -> list[int]:
        """This rank's training tasks still under budget."""
        return [t for t in self.local_ids() if self.steps_of(t) < self.budget]

    def any_collecting(self) -> bool:
        """Whether any rank still has a task to collect for (a collective call)."""
        return self.sync.any(bool(self.collecting()))

    # ---- 1. collect -----------------------------------------------------------------------

    def collect(self, active: list[int]) -> None:
        """One step of every env copy of the ``active`` tasks, chosen by one batched search."""
        with self.phases("collect"):
            actor = self.acting.model if self.acting is not None else self.model
            progress = self.loop.clock / self.budget
            self.stats = self.collector.step(actor, active, progress=progress) if active else {"episodes": [], "search": []}

    def advance_clock(self, active: list[int], before: int) -> None:
        """Move the per-task step clock by the mean steps the collecting tasks of every rank
        gained; log finished episodes, and re-weigh tasks by difficulty if configured."""
        gained, count = self.sync.sum([sum(self.steps_of(t) for t in active) - before, len(active)])
        self.loop.clock += gained / max(count, 1)
        for tid, ret, length in self.stats["episodes"]:
            self.loop.recent_returns[tid] = (self.loop.recent_returns[tid] + [ret])[-20:]
            self.logger.scalars({f"task{tid}/collect/return": ret, f"task{tid}/collect/length": length}, self.steps_of(tid))
        if self.train_cfg.task_weighting == "difficulty" and self.stats["episodes"]:
            progress = [task_progress(self.loop.recent_returns[t], self.tasks[t].spec) for t in self.all_ids]
            self.learner.task_weights = difficulty_weights(progress, self.train_cfg.difficulty_temperature)

    # ---- 2. learn -------------------------------------------------------------------------

    def owed_updates(self) -> int:
        """Updates the replay ratio owes for the data so far; 0 until every training task of
        every rank holds ``learning_starts`` steps."""
        local = self.local_ids()
        self.learner.grad_weight = len(local) / max(len(self.training_ids()), 1)
        ready = all(self.steps_of(t) >= self.train_cfg.learning_starts for t in local)
        if not self.training_ids() or not self.sync.all(ready):
            return 0
        owed_total = int(self.train_cfg.replay_ratio * (self.loop.clock - self.train_cfg.learning_starts))
        return max(0, owed_total - self.learner.updates)

    def learn(self) -> None:
        """Apply the owed updates here and now."""
        owed = self.owed_updates()
        self.learner.set_lr(self.train_cfg.lr_at(self.loop.clock))
        for _ in range(owed):
            self.record_update(self.one_update())
        self.log_training(owed)
        if self.acting is not None:
            self.acting.refresh(self.model)

    def start_owed_updates(self) -> BackgroundUpdates | None:
        """(``train.overlap``) Start the owed updates on a worker thread, their batches drawn
        now, to run while the next step collects with the acting copy; None without overlap."""
        if self.acting is None:
            return None
        owed = self.owed_updates()
        self.learner.set_lr(self.train_cfg.lr_at(self.loop.clock))
        local = self.local_ids()
        if not local:
            return BackgroundUpdates([self.learner.idle_update] * owed)
        batches = []
        for _ in range(owed):
            with self.phases("sample"):
                batches.append(self.learner.sample(self.collector.replays, local))
        self.background_batches = batches
        return BackgroundUpdates([lambda b=b: self.learner.update(b) for b in batches])

    def finish_owed_updates(self, learning: BackgroundUpdates | None) -> None:
        """(``train.overlap``) Wait for the worker's updates, record them and refresh the acting copy."""
        if learning is None:
            return
        with self.phases("update"):  # what the learner still needs once collection is done
            results = learning.join()
        batches, self.background_batches = self.background_batches or [None] * len(results), []
        for batch, result in zip(batches, results):
            if batch is not None:  # the replay is written on this thread only
                self.learner.apply_priorities(batch, self.collector.replays)
            if self.record_update(result):  # a roll-back: later updates were discarded with it
                break
        self.log_training(len(results))
        self.acting.refresh(self.model)

    def one_update(self) -> dict:
        """Sample and apply one update; with every task of this rank solved, a zero-gradient
        update that joins the other ranks' step."""
        local = self.local_ids()
        if not local:
            with self.phases("update"):
                return self.learner.idle_update()
        with self.phases("sample"):
            batch = self.learner.sample(self.collector.replays, local)
        with self.phases("update"):
            result = self.learner.update(batch)
        self.learner.apply_priorities(batch, self.collector.replays)
        return result

    def record_update(self, result: dict) -> bool:
        """Count a NaN/inf update (skipped; too many in a row: back to the last checkpoint, and
        True) and log conflict measurements (every one)."""
        self.metrics = result
        loop = self.loop
        if "nonfinite" in result:
            loop.nonfinite_skipped += 1
            self.nonfinite_in_a_row += 1
            self.logger.scalars({"nonfinite_skipped": loop.nonfinite_skipped}, int(loop.clock))
            if self.nonfinite_in_a_row >= self.train_cfg.max_nonfinite_updates:
                _roll_back(self.rank_dir, self.learner, self.dps, self.config)
                loop.rollbacks += 1
                self.nonfinite_in_a_row = 0
                return True
            return False
        self.nonfinite_in_a_row = 0
        conflict = {k: v for k, v in result.items() if k.startswith("conflict/") or k.endswith("/cluster")}
        if conflict:
            self.logger.scalars(conflict, int(loop.clock))
            self.logger.train_point({"env_steps": int(loop.clock), "updates": self.learner.updates, **conflict})
        return False

    def log_training(self, done: int) -> None:
        """The training scalars and search statistics, when the ``done`` updates just made
        crossed a multiple of 50."""
        metrics, clock = self.metrics, int(self.loop.clock)
        if done > 0 and self.learner.updates % 50 < done and "nonfinite" not in metrics:
            self.logger.scalars(metrics, clock)
            for tid, root_value, entropy in self.stats["search"]:
                scalars = {f"task{tid}/search/root_value": root_value, f"task{tid}/search/policy_entropy": entropy}
                self.logger.scalars(scalars, self.steps_of(tid))
            novelty = {f"task{tid}/collect/distinct_observations": float(n) for tid, n in self.stats.get("novelty", [])}
            self.logger.scalars(novelty, clock)
            kept = {k: v for k, v in {**metrics, **novelty}.items() if _kept_in_metrics_json(k)}
            self.logger.train_point({"env_steps": clock, "updates": self.learner.updates, **kept})

    # ---- DPS ------------------------------------------------------------------------------

    def maybe_enter_next_stage(self) -> None:
        """(DPS) Enter the next LoRA stage when the stage's update budget is spent."""
        if self.dps is not None and (switched := self.dps.maybe_switch(self.learner.updates, int(self.loop.clock))) is not None:
            self.log_dps(switched)

    def log_dps(self, switched: int | None) -> None:
        if self.dps is None:
            return
        if switched is not None:
            enter_stage(self.model, self.learner.target, switched, self.config.dps)
            if self.acting is not None:
                self.acting.replace(self.model)
        values = {"dps/stage": self.dps.stage, "dps/solved": len(self.dps.solved)}
        self.logger.scalars(values, int(self.loop.clock))
        self.logger.train_point({"env_steps": int(self.loop.clock), "updates": self.learner.updates, **values})

    # ---- 3. evaluate and checkpoint -------------------------------------------------------

    def evaluate_if_due(self, finished: bool) -> None:
        """Evaluate every task (solved ones too) at fixed per-task step counts and at the end:
        here, or with ``train.background_eval`` handed to the worker (the last evaluation is
        always the loop's own)."""
        progress_steps = int(self.loop.clock)
        if progress_steps < self.loop.next_eval and not finished:
            return
        total = int(self.sync.sum([sum(self.steps_of(t) for t in self.own)])[0])
        point = EvalPoint(progress_steps, self.learner.updates, self.wall(), total)
        self.take_background_evaluation()  # the previous point's figures
        if self.background_eval is None or finished:
            with self.phases("evaluate"):
                self.console.activity("evaluating")
                results = evaluate(
                    self.model, self.tasks, self.layout, self.config, self.device, task_ids=self.own,
                    on_episode=self.console.evaluation_progress,
                )  # fmt: skip
                self.console.activity("")
            self.record_evaluation(dataclasses.replace(point, wall_s=self.wall()), results, eval_s=self.phases.last)
        else:
            pending = PendingEvaluation(point, self.dps.stage if self.dps is not None else None)
            self.background_eval.submit(self.model, self.own, pending)
        self.loop.next_eval = _next_multiple(progress_steps, self.train_cfg.eval_every)

    def record_evaluation(self, point: EvalPoint, results: dict, eval_s: float, worker_s: float | None = None) -> None:
        """Log an evaluation of the run at ``point`` (its env steps, updates, wall time) and let
        DPS see it."""
        loop = self.loop
        loop.latest_eval = self.sync.evaluation(results, len(self.tasks))
        self.logger.evaluation(
            point.env_steps, point.updates, point.wall_s, loop.latest_eval, point.env_steps_total,
            eval_s=eval_s, worker_s=worker_s,
        )  # fmt: skip
        if self.dps is not None:
            returns = {t: r["return_mean"] for t, r in loop.latest_eval.items()}
            self.log_dps(self.dps.observe(returns, point.updates, point.env_steps))

    def take_background_evaluation(self, unless_current: bool = False) -> None:
        """Wait for the evaluation out at the worker and record it; with ``unless_current``
        leave it out when it measures the weights as they are now (a checkpoint records it)."""
        background = self.background_eval
        if background is None or background.pending is None:
            return
        out = background.pending
        if unless_current and (out.point.env_steps, out.point.updates) == (int(self.loop.clock), self.learner.updates):
            return
        with self.phases("evaluate"):
            pending, results, waited, worker_s = background.take()
        self.record_evaluation(pending.point, results, eval_s=waited, worker_s=worker_s)

    def checkpoint_if_due(self, finished: bool) -> None:
        """Checkpoint at fixed per-task step counts and at the end."""
        progress_steps = int(self.loop.clock)
        if progress_steps < self.loop.next_ckpt and not finished:
            return
        self.loop.next_ckpt = _next_multiple(progress_steps, self.train_cfg.checkpoint_every)
        with self.phases("checkpoint"):
            self.console.activity("writing checkpoint")
            self.checkpoint_now()
            self.console.activity("")

    def checkpoint_now(self) -> Path:
        self.take_background_evaluation(unless_current=True)  # a checkpoint holds no evaluation of other weights
        out = None if self.background_eval is None else self.background_eval.pending
        self.loop.pending_eval = None if out is None else dataclasses.asdict(out)  # read back only on resume
        keep = self.train_cfg.keep_checkpoints
        return save_run(self.rank_dir, self.learner, self.collector, self.loop, self.dps, self.logger, self.wall(), keep)

    # ---- progress and the end -------------------------------------------------------------

    def wall(self) -> float:
        """Seconds of training so far, the time before a resume included."""
        return time.perf_counter() - self.start

    def show_progress(self) -> None:
        dps, loop = self.dps, self.loop
        stage = f"  |  DPS stage {dps.stage}, solved {len(dps.solved)}/{len(self.all_ids)}" if dps is not None else ""
        steps = sum(self.steps_of(t) for t in self.all_ids)
        self.console.update(steps, self.learner.updates, loop.latest_eval, loop.recent_returns, self.metrics, stage)

    def summary(self, wall: float) -> dict:
        """The run's figures for ``metrics.json``: steps, updates, throughput, phases, final
        evaluation, robustness counters (collective calls: every rank takes part)."""
        all_ids, names, learner, loop = self.all_ids, self.names, self.learner, self.loop
        per_task_steps = [int(x) for x in self.sync.sum([float(self.steps_of(t)) if t in self.own else 0.0 for t in all_ids])]
        crashes = [int(x) for x in self.sync.sum([float(self.collector.env_crashes().get(t, 0)) for t in all_ids])]
        total_steps = sum(per_task_steps)
        summary = {
            "suite": self.config.suite,
            "config_hash": self.config.hash(),
            "processes": self.info.world,
            "machine": machine_info(self.device),
            "env_steps_per_task": {names[t]: per_task_steps[t] for t in all_ids},
            "env_steps_total": total_steps,
            "updates": learner.updates,
            "wall_s": round(wall, 2),
            "env_steps_per_s": round(total_steps / wall, 2),
            "updates_per_s": round(learner.updates / wall, 3),
            "phase_s": self.phases.summary(),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "parameter_breakdown": self.model.parameter_breakdown(),
            "final_eval": {names[t]: loop.latest_eval.get(t, {}) for t in all_ids},
            "robustness": {
                "resumes": loop.resumes,
                "env_restarts": {names[t]: crashes[t] for t in all_ids},
                "nonfinite_updates_skipped": loop.nonfinite_skipped,
                "rollbacks": loop.rollbacks,
            },
        }
        if learner.cluster_labels:
            summary["clusters"] = {names[t]: c for t, c in sorted(learner.cluster_labels.items())}
        if self.dps is not None:
            summary["dps"] = {
                "num_stages": self.config.model.lora_stages,
                **self.dps.state_dict(),
                "solved": [names[t] for t in sorted(self.dps.solved)],
            }
        return summary


def _rank_dir(run_dir: Path, rank: int) -> Path:
    """Where a rank keeps its checkpoints and metrics (each rank its own replay): the run
    directory for rank 0, ``rank<r>/`` inside it for the others."""
    return run_dir if rank == 0 else run_dir / f"rank{rank}"


def _default_threads(overlap: bool) -> int:
    """``train.torch_threads: 0``: every core, or half of them per thread with ``train.overlap``
    (the learner's thread and the collector's each run their own ops)."""
    cores = os.cpu_count() or 1
    return max(1, cores // 2) if overlap else cores


def _resume_points(run_dir: Path) -> list[Path]:
    """The run's checkpoints that verify, newest first; damaged ones are reported and skipped."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"cannot resume: no checkpoint in {run_dir / 'checkpoints'}")
    intact = []
    for path in reversed(candidates):
        try:
            verify_checkpoint(path)
            intact.append(path)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; trying an older checkpoint", RuntimeWarning, stacklevel=3)
    if not intact:
        raise CheckpointError(f"cannot resume: every checkpoint in {run_dir / 'checkpoints'} is damaged")
    return intact


def _restore_newest(
    candidates: list[Path], learner: Learner, collector: Collector, dps: DPSController | None, logger: MetricsLogger
) -> LoopState:
    """Restore the newest of ``candidates`` whose content loads (its checksums passed, but it
    may still not fit this run); every restore overwrites all it touches, so a failed one
    leaves nothing behind for the next."""
    for path in candidates:
        try:
            return restore_run(path, learner, collector, dps, logger)
        except (CheckpointError, ValueError, KeyError) as exc:
            warnings.warn(
                f"cannot restore {path.name} ({type(exc).__name__}: {exc}); trying an older checkpoint",
                RuntimeWarning,
                stacklevel=3,
            )
    raise CheckpointError(f"cannot resume: no checkpoint in {candidates[0].parent} could be restored")


def _roll_back(run_dir: Path, learner: Learner, dps: DPSController | None, config: Config) -> None:
    """Reload the networks and optimiser of the last checkpoint after repeated NaN/inf updates."""
    try:
        path = latest_checkpoint(run_dir)
    except CheckpointError:
        raise RuntimeError(
            f"{config.train.max_nonfinite_updates} updates in a row had NaN/inf losses or gradients and there is "
            "no checkpoint to roll back to; lower train.lr or check the task's rewards"
        ) from None
    warnings.warn(
        f"{config.train.max_nonfinite_updates} NaN/inf updates in a row: rolling back to {path}", RuntimeWarning, stacklevel=2
    )
    load_checkpoint(path, learner.model, learner.target, learner.optimizer)
    if dps is not None:
        enter_stage(learner.model, learner.target, dps.stage, config.dps)


def _kept_in_metrics_json(key: str) -> bool:
    """Training scalars that reports read back from ``metrics.json`` (all go to TensorBoard)."""
    per_task = key.startswith("task") and ("/loss/" in key or key.endswith(("/loss_weight", "/cluster", "/distinct_observations")) or "/moe/" in key)
    return per_task or key.startswith(("loss/", "dps/", "time/")) or key == "grad_norm"


def _next_multiple(value: int, every: int) -> int:
    """The first multiple of ``every`` strictly above ``value``."""
    return (value // every + 1) * every
