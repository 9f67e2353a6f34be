"""Where one step of a run goes: environment, search (network calls and tree), learner
(sampling, target pass, online forward, losses, backward, optimiser), evaluation, logging.

    python benchmarks/step_profile.py                                  # cartpole, minatar, atari_smoke
    python benchmarks/step_profile.py --suites cartpole --steps 2000   # one suite, longer

Each suite trains in this process for ``--steps`` env steps per task (one torch thread,
``learning_starts`` lowered so that most of the run learns, one evaluation at the end, no
checkpoint), with timers wrapped around the functions that do each part of the work. Timers are
inclusive; each row below is exclusive of the rows nested in it (``search: tree`` is the
search minus its network calls, ``collect: other`` the collection minus environment and
search, and so on), so the rows add up to the run's wall time. Writes
``benchmarks/results/step_profile.json``; prints one Markdown table per suite. (Not named
``profile.py``: benchmark modules are importable from this folder, and that name would shadow
the standard library's ``profile``, which torch imports.)
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

#: Rows of the table: name -> (inclusive timer, timers nested in it). Environment and search
#: timers count collection only (``phase`` below); evaluation is one row.
ROWS = {
    "collect: environment": ("collect/env", []),
    "collect: search network calls": ("collect/search_net", []),
    "collect: search tree": ("collect/search", ["collect/search_net"]),
    "collect: other (encode, root inference, replay writes)": ("collect", ["collect/env", "collect/search"]),
    "learner: sampling": ("sample", []),
    "learner: target encode + value pass (no grad)": ("target", []),
    "learner: online encode + forward": ("forward", []),
    "learner: losses": ("losses", ["target", "forward"]),
    "learner: backward": ("backward", []),
    "learner: optimiser, clip, EMA": ("optimiser", []),
    "learner: other": ("update", ["losses", "backward", "optimiser"]),
    "evaluation": ("evaluate", []),
    "logging": ("log", []),
}


class Timers:
    """Inclusive seconds per name; wrapping is undone by :meth:`restore`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.phase = ""
        """``collect`` while the collector steps, ``evaluate`` during evaluation."""
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, name: str, when=None, phase: bool = False, sets_phase: bool = False) -> None:
        """Time ``owner.attr`` under ``name`` (``<phase>/name`` with ``phase``), where ``when``
        (given the call's arguments) holds; ``sets_phase``: the call is a phase."""
        original = getattr(owner, attr)
        timers = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if when is not None and not when(*args, **kwargs):
                return original(*args, **kwargs)
            key = f"{timers.phase}/{name}" if phase else name
            outer = timers.phase
            if sets_phase:
                timers.phase = name
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.seconds[key] += time.perf_counter() - start
                timers.calls[key] += 1
                timers.phase = outer

        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


@contextmanager
def instrumented():
    import torch

    from scalezero.model.tree_cache import TreeSearchModel
    from scalezero.model.world_model import WorldModel
    from scalezero.tasks.vector import EnvBatch
    from scalezero.training import acting, run
    from scalezero.training.collector import Collector
    from scalezero.training.learner import Learner
    from scalezero.training.metrics import MetricsLogger

    timers = Timers()
    timers.wrap(Collector, "step", "collect", sets_phase=True)
    timers.wrap(run, "evaluate", "evaluate", sets_phase=True)
    timers.wrap(EnvBatch, "step", "env", phase=True)
    timers.wrap(acting, "run_search", "search", phase=True)
    timers.wrap(TreeSearchModel, "__call__", "search_net", phase=True)
    timers.wrap(Learner, "sample", "sample")
    timers.wrap(Learner, "update", "update")
    timers.wrap(Learner, "compute_losses", "losses")
    timers.wrap(Learner, "_step", "optimiser")
    timers.wrap(Learner, "_encode", "target", when=lambda self, net, *a, **k: net is self.target)
    timers.wrap(Learner, "_encode", "forward", when=lambda self, net, *a, **k: net is self.model)
    timers.wrap(WorldModel, "sequence_values", "target")  # only the learner's target pass calls it
    timers.wrap(WorldModel, "forward_sequence", "forward")
    timers.wrap(torch.Tensor, "backward", "backward")
    timers.wrap(MetricsLogger, "scalars", "log")
    timers.wrap(MetricsLogger, "train_point", "log")
    try:
        yield timers
    finally:
        timers.restore()


def profile_suite(suite: str, steps: int) -> dict:
    import torch

    from scalezero.config import load_suite, with_overrides
    from scalezero.training.loop import train

    base = load_suite(suite)
    tasks = len(base.tasks)
    config = with_overrides(
        base, "train", env_steps=steps, learning_starts=min(base.train.learning_starts, steps // 5), eval_every=steps,
        checkpoint_every=10 * steps, torch_threads=1, background_eval=False, eval_episodes=min(base.train.eval_episodes, 4),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, instrumented() as timers:
        start = time.perf_counter()
        result = train(config, Path(tmp) / "run", show_progress=False)
        wall = time.perf_counter() - start
    t = timers.seconds
    rows = {}
    for label, (name, nested) in ROWS.items():
        rows[label] = t.get(name, 0.0) - sum(t.get(n, 0.0) for n in nested)
    rows["setup, final report and the rest of the loop"] = wall - sum(rows.values())
    return {
        "suite": suite, "tasks": tasks, "env_steps_per_task": steps, "updates": result.updates, "wall_s": wall,
        "seconds": rows, "calls": dict(timers.calls), "torch_threads": torch.get_num_threads(),
    }  # fmt: skip


def markdown(p: dict) -> str:
    total = p["wall_s"]
    steps = p["env_steps_per_task"] * p["tasks"]
    lines = [
        f"`{p['suite']}`: {steps:,} env steps, {p['updates']:,} updates, {total:.1f} s",
        "",
        "| part | seconds | share | share without evaluation | per env step |",
        "|---|---|---|---|---|",
    ]
    rest = total - p["seconds"]["evaluation"]
    for label, s in p["seconds"].items():
        without = "" if label == "evaluation" else f"{100 * s / rest:.1f}%"
        lines.append(f"| {label} | {s:.1f} | {100 * s / total:.1f}% | {without} | {1000 * s / steps:.2f} ms |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["cartpole", "minatar", "atari_smoke"])
    parser.add_argument("--steps", type=int, default=1000, help="env steps per task")
    args = parser.parse_args()
    profiles = []
    for suite in args.suites:
        p = profile_suite(suite, args.steps)
        profiles.append(p)
        print(markdown(p), "\n", flush=True)
    print("wrote", write_result("step_profile", {"steps_per_task": args.steps, "profiles": profiles}))


def tables(path: Path) -> str:
    """The Markdown tables of a written ``step_profile.json`` (to re-read results without running)."""
    import json

    return "\n\n".join(markdown(p) for p in json.loads(path.read_text())["profiles"])


if __name__ == "__main__":
    main()
