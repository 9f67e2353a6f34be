"""The training loop: collect with search, learn at the replay ratio, evaluate, checkpoint, report.

Reads top to bottom like the algorithm. Each iteration: every task's env copies take one
step chosen by one batched search; the learner then performs the updates owed by the
replay ratio; evaluation and checkpoints happen at fixed per-task step counts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from scalezero.config import Config, ConfigError, save_config
from scalezero.training.background_eval import BackgroundEvaluator
from scalezero.training.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, verify_checkpoint
from scalezero.training.collector import Collector
from scalezero.training.console import TrainingConsole
from scalezero.training.distributed import Sync, broadcast_parameters, init_from_env, partition
from scalezero.training.dps import DPSController, enter_stage
from scalezero.training.evaluator import evaluate
from scalezero.training.learner import Learner
from scalezero.training.metrics import MetricsLogger
from scalezero.training.overlap import ActingCopy, BackgroundUpdates
from scalezero.training.run_dir import claim_run_dir
from scalezero.training.run_state import LoopState, restore_run, save_run
from scalezero.training.setup import build_model, pick_device, resolve_tasks, seed_everything
from scalezero.training.weighting import difficulty_weights, task_progress


@dataclass
class RunResult:
    """What a finished run reports: per-task final evaluation and throughput."""

    run_dir: Path
    final_eval: dict[str, dict[str, float]]
    env_steps: int
    updates: int
    wall_s: float
    is_main: bool = True  # False on the other ranks of a multi-process run


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
    train_cfg = config.train
    run_dir = Path(run_dir)
    if train_cfg.background_eval and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train.background_eval is not supported with several processes (their evaluations are gathered in step)")
    if not resume and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        claim_run_dir(run_dir, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(train_cfg.seed)
    torch.set_num_threads(train_cfg.torch_threads or _default_threads(train_cfg.overlap))
    device = pick_device(train_cfg.device)
    tasks, layout = resolve_tasks(config)
    names = [t.spec.name for t in tasks]
    rank = int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    candidates = _resume_points(run_dir if rank == 0 else run_dir / f"rank{rank}") if resume else []
    save_config(config, run_dir / "config.yaml")  # every rank: machines need not share a disk

    all_ids = list(range(len(tasks)))
    info = init_from_env(device)
    sync = Sync(info, device)
    own = partition(len(tasks), info.world)[info.rank] if info.enabled else all_ids
    if info.enabled and train_cfg.cluster_every:
        raise ConfigError(
            "train.cluster_every is not supported with several processes yet (each rank sees only its tasks' gradients)"
        )
    rank_dir = run_dir if info.is_main else run_dir / f"rank{info.rank}"  # each rank keeps its own replay
    model = build_model(config, layout, device)
    collector = Collector(tasks, layout, config, device, task_ids=own)
    learner = Learner(model, layout, config, device)
    if info.enabled:
        broadcast_parameters(model)
        broadcast_parameters(learner.target)
        learner.distributed = True
    logger = MetricsLogger(rank_dir, names)
    console = TrainingConsole(config, layout, model, device, enabled=show_progress and info.is_main)
    dps = DPSController([t.spec for t in tasks], config.model.lora_stages, config.dps) if config.dps.enabled else None
    if resume:
        loop = _restore_newest(candidates, learner, collector, dps, logger)
    else:
        loop = LoopState(
            next_eval=train_cfg.eval_every, next_ckpt=train_cfg.checkpoint_every, recent_returns={t: [] for t in all_ids}
        )
    budget = train_cfg.env_steps
    start = time.perf_counter() - loop.wall_before
    phases = PhaseClock()
    metrics: dict[str, float] = {}
    nonfinite_in_a_row = 0

    def steps_of(t: int) -> int:
        return collector.env_steps[t]

    def training_ids() -> list[int]:
        return dps.active_tasks() if dps is not None else all_ids

    def local_ids() -> list[int]:
        """This rank's tasks still training (unsolved)."""
        return [t for t in training_ids() if t in own]

    def collecting() -> list[int]:
        """This rank's unsolved tasks still under budget."""
        return [t for t in local_ids() if steps_of(t) < budget]

    def log_dps(switched: int | None) -> None:
        if dps is None:
            return
        if switched is not None:
            enter_stage(model, learner.target, switched, config.dps)
            if acting is not None:
                acting.replace(model)
        values = {"dps/stage": dps.stage, "dps/solved": len(dps.solved)}
        logger.scalars(values, int(loop.clock))
        logger.train_point({"env_steps": int(loop.clock), "updates": learner.updates, **values})

    def checkpoint_now() -> Path:
        take_background_evaluation(unless_current=True)  # a checkpoint holds no evaluation of other weights
        return save_run(rank_dir, learner, collector, loop, dps, logger, time.perf_counter() - start, train_cfg.keep_checkpoints)

    def owed_updates() -> int:
        """Updates the replay ratio owes for the data so far; 0 until every training task of
        every rank holds ``learning_starts`` steps."""
        local = local_ids()
        learner.grad_weight = len(local) / max(len(training_ids()), 1)
        if not training_ids() or not sync.all(all(steps_of(t) >= train_cfg.learning_starts for t in local)):
            return 0
        return max(0, int(train_cfg.replay_ratio * (loop.clock - train_cfg.learning_starts)) - learner.updates)

    def one_update() -> dict:
        """Sample and apply one update; with every task of this rank solved, a zero-gradient
        update that joins the other ranks' step."""
        local = local_ids()
        if not local:
            with phases("update"):
                return learner.idle_update()
        with phases("sample"):
            batch = learner.sample(collector.replays, local)
        with phases("update"):
            return learner.update(batch)

    def presampled_updates(owed: int) -> list:
        """(overlap) The owed updates as jobs for the worker thread, their batches drawn now."""
        local = local_ids()
        batches = []
        for _ in range(owed if local else 0):
            with phases("sample"):
                batches.append(learner.sample(collector.replays, local))
        return [lambda b=b: learner.update(b) for b in batches] if local else [learner.idle_update] * owed

    def record_update(result: dict) -> bool:
        """Count a NaN/inf update (skipped; too many in a row: back to the last checkpoint, and
        True) and log conflict measurements (every one)."""
        nonlocal metrics, nonfinite_in_a_row
        metrics = result
        if "nonfinite" in result:
            loop.nonfinite_skipped += 1
            nonfinite_in_a_row += 1
            logger.scalars({"nonfinite_skipped": loop.nonfinite_skipped}, int(loop.clock))
            if nonfinite_in_a_row >= train_cfg.max_nonfinite_updates:
                _roll_back(rank_dir, learner, dps, config)
                loop.rollbacks += 1
                nonfinite_in_a_row = 0
                return True
            return False
        nonfinite_in_a_row = 0
        conflict = {k: v for k, v in result.items() if k.startswith("conflict/") or k.endswith("/cluster")}
        if conflict:
            logger.scalars(conflict, int(loop.clock))
            logger.train_point({"env_steps": int(loop.clock), "updates": learner.updates, **conflict})
        return False

    def log_training(done: int) -> None:
        """The training scalars and search statistics, when the ``done`` updates just made
        crossed a multiple of 50."""
        if done > 0 and learner.updates % 50 < done and "nonfinite" not in metrics:
            logger.scalars(metrics, int(loop.clock))
            for tid, root_value, entropy in stats["search"]:
                logger.scalars(
                    {f"task{tid}/search/root_value": root_value, f"task{tid}/search/policy_entropy": entropy}, steps_of(tid)
                )
            logger.train_point(
                {
                    "env_steps": int(loop.clock),
                    "updates": learner.updates,
                    **{k: v for k, v in metrics.items() if _kept_in_metrics_json(k)},
                }
            )

    def record_evaluation(point: dict, results: dict, eval_s: float, worker_s: float | None = None) -> None:
        """Log an evaluation of the run at ``point`` (its env steps, updates, wall time) and let
        DPS see it."""
        loop.latest_eval = sync.evaluation(results, len(tasks))
        logger.evaluation(point["env_steps"], point["updates"], point["wall_s"], loop.latest_eval, point["env_steps_total"], eval_s=eval_s, worker_s=worker_s)
        if dps is not None:
            log_dps(dps.observe({t: r["return_mean"] for t, r in loop.latest_eval.items()}, point["updates"], point["env_steps"]))

    def take_background_evaluation(unless_current: bool = False) -> None:
        """Wait for the evaluation out at the worker and record it; with ``unless_current``
        leave it out when it measures the weights as they are now (a checkpoint records it)."""
        if background_eval is None or background_eval.pending is None:
            return
        current = (background_eval.pending.env_steps, background_eval.pending.updates) == (int(loop.clock), learner.updates)
        if unless_current and current:
            return
        with phases("evaluate"):
            pending, results, waited, worker_s = background_eval.take()
        loop.pending_eval = None
        point = {"env_steps": pending.env_steps, "updates": pending.updates, "wall_s": pending.wall_s, "env_steps_total": pending.env_steps_total}
        record_evaluation(point, results, eval_s=waited, worker_s=worker_s)

    acting = ActingCopy(model) if train_cfg.overlap else None
    background_eval = BackgroundEvaluator(config) if train_cfg.background_eval else None
    if background_eval is not None and loop.pending_eval is not None:  # resumed with an evaluation of these weights out
        background_eval.submit(model, own, **loop.pending_eval)
    stats: dict = {"episodes": [], "search": []}
    with console, _stop_signals() as stop, _closing(background_eval):  # the live display always stops, also on errors
        while sync.any(bool(collecting())):
            # (overlap) The updates owed for the data so far start on a worker thread and run
            # while this step collects with the acting copy.
            learning = BackgroundUpdates(presampled_updates(owed_updates())) if acting is not None else None
            # 1. Collect: one step of every copy of every unsolved task still under budget.
            active = collecting()
            before = sum(steps_of(t) for t in active)
            with phases("collect"):
                actor = acting.model if acting is not None else model
                stats = collector.step(actor, active, progress=loop.clock / budget) if active else {"episodes": [], "search": []}
            if learning is not None:
                with phases("update"):  # what the learner still needs once collection is done
                    results = learning.join()
                any(record_update(r) for r in results)  # stops at a roll-back: later updates were discarded with it
                log_training(len(results))
                acting.refresh(model)
            gained, count = sync.sum([sum(steps_of(t) for t in active) - before, len(active)])
            loop.clock += gained / max(count, 1)
            for tid, ret, length in stats["episodes"]:
                loop.recent_returns[tid] = (loop.recent_returns[tid] + [ret])[-20:]
                logger.scalars({f"task{tid}/collect/return": ret, f"task{tid}/collect/length": length}, steps_of(tid))
            if train_cfg.task_weighting == "difficulty" and stats["episodes"]:
                progress = [task_progress(loop.recent_returns[t], tasks[t].spec) for t in all_ids]
                learner.task_weights = difficulty_weights(progress, train_cfg.difficulty_temperature)
            # 2. Learn: the updates owed by the replay ratio, once every training task has enough
            # data (with overlap, only at the end: the updates owed for the last step).
            if acting is None or not sync.any(bool(collecting())):
                owed = owed_updates()
                for _ in range(owed):
                    record_update(one_update())
                log_training(owed)
                if acting is not None:
                    acting.refresh(model)
            if dps is not None and (switched := dps.maybe_switch(learner.updates, int(loop.clock))) is not None:
                log_dps(switched)
            # 3. Evaluate (every task, solved ones too) and checkpoint at fixed per-task step counts, and at the end.
            progress_steps = int(loop.clock)
            finished = not sync.any(bool(collecting()))
            if progress_steps >= loop.next_eval or finished:
                total = int(sync.sum([sum(steps_of(t) for t in own)])[0])
                point = {"env_steps": progress_steps, "updates": learner.updates, "wall_s": time.perf_counter() - start, "env_steps_total": total}
                take_background_evaluation()  # the previous point's figures (background_eval)
                if background_eval is None or finished:  # the last evaluation is always the loop's own
                    with phases("evaluate"):
                        console.activity("evaluating")
                        results = evaluate(model, tasks, layout, config, device, task_ids=own, on_episode=console.evaluation_progress)
                        console.activity("")
                    record_evaluation({**point, "wall_s": time.perf_counter() - start}, results, eval_s=phases.last)
                else:
                    loop.pending_eval = {**point, "dps_stage": dps.stage if dps is not None else None}
                    background_eval.submit(model, own, **loop.pending_eval)
                loop.next_eval = _next_multiple(progress_steps, train_cfg.eval_every)
            if progress_steps >= loop.next_ckpt or finished:
                loop.next_ckpt = _next_multiple(progress_steps, train_cfg.checkpoint_every)
                with phases("checkpoint"):
                    console.activity("writing checkpoint")
                    checkpoint_now()
                    console.activity("")
            if sync.any(stop["stop"]) and not finished:
                raise TrainingInterrupted(checkpoint_now())
            stage = f"  |  DPS stage {dps.stage}, solved {len(dps.solved)}/{len(all_ids)}" if dps is not None else ""
            console.update(
                sum(steps_of(t) for t in all_ids), learner.updates, loop.latest_eval, loop.recent_returns, metrics, stage
            )

    wall = time.perf_counter() - start
    per_task_steps = [int(x) for x in sync.sum([float(steps_of(t)) if t in own else 0.0 for t in all_ids])]
    crashes = [int(x) for x in sync.sum([float(collector.env_crashes().get(t, 0)) for t in all_ids])]
    total_steps = sum(per_task_steps)
    summary = {
        "suite": config.suite,
        "config_hash": config.hash(),
        "processes": info.world,
        "env_steps_per_task": {names[t]: per_task_steps[t] for t in all_ids},
        "env_steps_total": total_steps,
        "updates": learner.updates,
        "wall_s": round(wall, 2),
        "env_steps_per_s": round(total_steps / wall, 2),
        "updates_per_s": round(learner.updates / wall, 3),
        "phase_s": phases.summary(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameter_breakdown": model.parameter_breakdown(),
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
    if dps is not None:
        summary["dps"] = {
            "num_stages": config.model.lora_stages,
            **dps.state_dict(),
            "solved": [names[t] for t in sorted(dps.solved)],
        }
    logger.write_json(summary)
    logger.close()
    result = RunResult(run_dir, summary["final_eval"], total_steps, learner.updates, wall, info.is_main)
    if info.is_main:
        console.finish(result, layout)
    return result


@contextlib.contextmanager
def _closing(background: BackgroundEvaluator | None):
    try:
        yield
    finally:
        if background is not None:
            background.close()


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
    per_task = key.startswith("task") and ("/loss/" in key or key.endswith(("/loss_weight", "/cluster")) or "/moe/" in key)
    return per_task or key.startswith(("loss/", "dps/", "time/")) or key == "grad_norm"


def _next_multiple(value: int, every: int) -> int:
    """The first multiple of ``every`` strictly above ``value``."""
    return (value // every + 1) * every
