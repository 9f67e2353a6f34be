"""Everything a run needs to continue after a crash: what goes into a checkpoint and back.

A checkpoint holds the networks and optimiser (tensors), every task's replay buffer, each
env copy's seed and the actions it took, the context histories the search acts from
(compressed arrays), and as JSON: the loop's clocks, step counters, learner counters, every
random generator's state, the DPS controller and the metrics history. Environments cannot be
pickled, so on resume each copy is built again from its seed and stepped through its actions:
a single-process run resumed from a checkpoint continues exactly as the run that never stopped
(same losses, same evaluations). An env that does not follow its seed is detected (the
rebuilt copy misses the saved observation); its running episodes are then closed in replay
as truncated, and new ones start with other seeds.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scalezero.training.checkpoint import load_arrays, load_checkpoint, prefixed, prune_checkpoints, save_checkpoint
from scalezero.training.collector import Collector
from scalezero.training.dps import DPSController, enter_stage
from scalezero.training.learner import Learner
from scalezero.training.metrics import MetricsLogger


@dataclass
class LoopState:
    """The loop's own clocks and recent history."""

    clock: float = 0.0
    """Env steps per task of the tasks still training (drives replay ratio, eval, checkpoints)."""
    next_eval: int = 0
    next_ckpt: int = 0
    wall_before: float = 0.0
    """Wall-clock seconds spent by earlier sessions of this run."""
    resumes: int = 0
    latest_eval: dict[int, dict[str, float]] = field(default_factory=dict)
    recent_returns: dict[int, list[float]] = field(default_factory=dict)
    nonfinite_skipped: int = 0
    rollbacks: int = 0
    pending_eval: dict[str, Any] | None = None
    """``train.background_eval``: the point (env steps, updates, wall, DPS stage) of an
    evaluation of the checkpoint's own weights still out when it was written (set as the
    checkpoint is written, from the evaluator; read only when a run resumes)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latest_eval"] = {str(k): v for k, v in self.latest_eval.items()}
        data["recent_returns"] = {str(k): v for k, v in self.recent_returns.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        data = dict(data)
        data["latest_eval"] = {int(k): v for k, v in data["latest_eval"].items()}
        data["recent_returns"] = {int(k): v for k, v in data["recent_returns"].items()}
        return cls(**data)


def _generator_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def _set_generator_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def save_run(
    run_dir: Path,
    learner: Learner,
    collector: Collector,
    loop: LoopState,
    dps: DPSController | None,
    logger: MetricsLogger,
    wall_now: float,
    keep: int,
) -> Path:
    """Write ``checkpoints/ckpt_<clock>`` with the whole run state; keep the newest ``keep``."""
    env_steps = int(loop.clock)
    np_state = np.random.get_state()
    state = {
        "env_steps": env_steps,
        "env_steps_per_task": {str(k): v for k, v in collector.env_steps.items()},
        "updates": learner.updates,
        "loop": {**loop.to_json(), "wall_before": wall_now},
        "learner": {
            "updates": learner.updates,
            "rng": _generator_state(learner.rng),
            "task_weights": learner.task_weights.tolist(),
            "cluster_labels": {str(k): v for k, v in learner.cluster_labels.items()},
        },
        "collector": {"rng": _generator_state(collector.rng), "crashes": collector.env_crashes()},
        "rng": {
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        },
        "metrics": {"eval": logger.eval_rows, "train": logger.train_rows},
    }
    if dps is not None:
        state["dps"] = dps.state_dict()
    arrays = {}
    for t, replay in collector.replays.items():
        for name, array in replay.state_dict().items():
            arrays[f"replay{t}.{name}"] = array
        arrays[f"env_obs{t}"] = collector.envs[t].obs
    arrays.update(collector.state_arrays())
    path = save_checkpoint(run_dir / "checkpoints" / f"ckpt_{env_steps}", learner.model, learner.target, learner.optimizer, state, arrays)
    prune_checkpoints(run_dir, keep)
    return path


def restore_run(
    path: Path, learner: Learner, collector: Collector, dps: DPSController | None, logger: MetricsLogger
) -> LoopState:
    """Load a checkpoint written by :func:`save_run` into freshly built pieces of the same run.

    The env copies are rebuilt where they follow their seeds, so the run goes on exactly as
    if it had not stopped; elsewhere (:meth:`Collector.load_state_arrays`) the episodes that
    were running end at the checkpoint, truncated, and new ones start."""
    state = load_checkpoint(path, learner.model, learner.target, learner.optimizer, restore_rng=True)
    arrays = load_arrays(path)
    for t, replay in collector.replays.items():
        replay.load_state_dict(prefixed(arrays, f"replay{t}."))
    collector.env_steps.clear()
    collector.env_steps.update({int(k): int(v) for k, v in state["env_steps_per_task"].items()})
    _set_generator_state(collector.rng, state["collector"]["rng"])
    learner.updates = int(state["learner"]["updates"])
    _set_generator_state(learner.rng, state["learner"]["rng"])
    learner.task_weights = np.asarray(state["learner"]["task_weights"], dtype=np.float64)
    learner.cluster_labels = {int(k): int(v) for k, v in state["learner"].get("cluster_labels", {}).items()}
    numpy_state = state["rng"]["numpy"]
    np.random.set_state((numpy_state[0], np.asarray(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
    py = state["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if dps is not None and "dps" in state:
        dps.load_state_dict(state["dps"])
        enter_stage(learner.model, learner.target, dps.stage, dps.cfg)  # requires_grad is not in the file
    logger.eval_rows = list(state["metrics"]["eval"])
    logger.train_rows = list(state["metrics"]["train"])
    loop = LoopState.from_json(state["loop"])
    loop.resumes += 1
    for t in collector.load_state_arrays(arrays):
        collector.replays[t].close_open_episodes(arrays[f"env_obs{t}"])
    return loop
