"""Greedy evaluation in a second process while training goes on (``train.background_eval``).

At an evaluation point the loop hands a copy of the online weights to a worker process and
trains on; the worker plays the evaluation episodes on its own core and the loop takes the
results at the next evaluation point (or at a checkpoint, or at the end), waiting only if
they are not ready. An evaluation depends on nothing but the weights, the config and its
seeds, so the figures are the ones the loop would have measured itself at that point, and
they are logged with that point's env steps, updates and wall time; when they are *taken*
is fixed by the schedule, not by the worker's speed, so runs stay deterministic and resume
exactly (a checkpoint written while an evaluation of its own weights is out records it, and
a resume starts it again from those weights).

The worker is started with ``spawn`` and builds the suite's tasks itself, so it knows the
shipped task families and any task registered at import time of an installed package; a
task registered only inside a script is not visible to it (keep ``background_eval`` off
there).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
import traceback
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection

import numpy as np
import torch

from scalezero.config import Config, config_from_dict

_WORKER: dict = {}


def _start_worker(config_data: dict, threads: int) -> None:
    from scalezero.training.setup import build_model, pick_device, resolve_tasks

    # Ctrl-C reaches the whole process group: the training process handles it (a final
    # checkpoint, which may still take this worker's evaluation) and shuts the worker down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(threads)
    config = config_from_dict(config_data)
    device = pick_device(config.train.device)
    tasks, layout = resolve_tasks(config)
    _WORKER.update(config=config, device=device, tasks=tasks, layout=layout, model=build_model(config, layout, device))


def _evaluate(weights: dict[str, np.ndarray], dps_stage: int | None, task_ids: list[int]) -> tuple[dict, float]:
    from scalezero.training.dps import enter_stage
    from scalezero.training.evaluator import evaluate

    config, model, device = _WORKER["config"], _WORKER["model"], _WORKER["device"]
    if dps_stage is not None:
        enter_stage(model, None, dps_stage, config.dps)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    start = time.perf_counter()
    results = evaluate(model, _WORKER["tasks"], _WORKER["layout"], config, device, task_ids=task_ids)
    return results, time.perf_counter() - start


def _serve(requests: multiprocessing.Queue, conn: Connection, config_data: dict, threads: int) -> None:
    """The worker process: set up once, then answer each evaluation request with ``("ok",
    (results, seconds))`` or ``("error", traceback text)`` on the pipe; leave when the training
    process is gone (it kills the worker on a normal stop)."""
    try:
        _start_worker(config_data, threads)
    except Exception:  # noqa: BLE001 (any failure goes back to the training process)
        conn.send(("error", traceback.format_exc()))
        return
    parent = os.getppid()
    while os.getppid() == parent:
        try:
            request = requests.get(timeout=1.0)
        except queue.Empty:
            continue
        try:
            conn.send(("ok", _evaluate(*request)))
        except Exception:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


@dataclass(frozen=True)
class EvalPoint:
    """The point of a run an evaluation measures (its figures are logged with these, whenever
    they are taken)."""

    env_steps: int
    updates: int
    wall_s: float
    env_steps_total: int


@dataclass(frozen=True)
class PendingEvaluation:
    """An evaluation out at the worker: the point it measures and the DPS stage of its weights.
    ``asdict`` of it is what a checkpoint records, and ``from_state`` reads that back."""

    point: EvalPoint
    dps_stage: int | None

    @classmethod
    def from_state(cls, state: dict) -> PendingEvaluation:
        # Checkpoints written before 2026-12-03 kept the point's fields beside ``dps_stage``.
        point = state.get("point") or {f.name: state[f.name] for f in fields(EvalPoint)}
        return cls(EvalPoint(**point), state["dps_stage"])


class BackgroundEvaluator:
    """One worker process that evaluates weight snapshots, one at a time."""

    def __init__(self, config: Config, threads: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        # Requests go through a queue (its feeder thread sends the weights while training goes
        # on); answers come back on a pipe, whose end-of-file says that the worker died.
        self._requests = context.Queue()
        self._conn, child = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(self._requests, child, config.to_dict(), threads), name="scalezero-eval", daemon=True)
        self._process.start()
        child.close()
        self.pending: PendingEvaluation | None = None

    def submit(self, model: torch.nn.Module, task_ids: list[int], pending: PendingEvaluation) -> None:
        """Start evaluating ``model``'s current weights, at ``pending.dps_stage`` (the previous
        evaluation must have been taken)."""
        assert self.pending is None, "take the previous evaluation first"
        weights = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        self._requests.put((weights, pending.dps_stage, list(task_ids)))
        self.pending = pending

    def take(self) -> tuple[PendingEvaluation, dict[int, dict[str, float]], float, float] | None:
        """Wait for the evaluation out, if any: (its point, results, seconds waited here,
        seconds it took in the worker)."""
        if self.pending is None:
            return None
        pending, self.pending = self.pending, None
        start = time.perf_counter()
        try:
            status, answer = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the background evaluation worker stopped (exit code {self._process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"background evaluation failed in the worker:\n{answer}")
        results, worker_s = answer
        return pending, results, time.perf_counter() - start, worker_s

    def close(self) -> None:
        """Stop the worker now (an evaluation still out is abandoned). It ignores SIGINT and
        SIGTERM, so it is killed, and reaped here so that nothing of the run outlives it."""
        self._requests.cancel_join_thread()  # a request not yet sent is dropped, not waited for
        self._requests.close()
        self._conn.close()
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=10)
