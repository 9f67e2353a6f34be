"""A run directory belongs to one run.

A new run refuses a directory that already holds a run (its ``config.yaml``, ``metrics.json``
or checkpoints): continuing it is ``--resume``, and replacing it is an explicit ``overwrite``,
which removes only what a run writes there. Default names carry the time and never collide.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from scalezero.config import ConfigError

#: What marks a directory as holding a run.
RUN_MARKERS = ("config.yaml", "metrics.json", "checkpoints")
#: Everything ``train``, ``eval``, ``report`` and ``play`` write into a run directory (what
#: ``overwrite`` removes); other files, such as a suite file kept beside the run, stay.
RUN_OUTPUTS = (
    *RUN_MARKERS,
    "eval.csv",
    "eval.json",
    "tensorboard",
    "play",
    "report.html",
    "report.md",
    "learning_curves.png",
    "losses.png",
    "expert_load.png",
    "gradient_conflict.png",
    "dps_timeline.png",
    "throughput.png",
    "random_references.json",
)


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a run."""
    return any((Path(run_dir) / name).exists() for name in RUN_MARKERS)


def claim_run_dir(run_dir: str | Path, overwrite: bool = False) -> Path:
    """Make ``run_dir`` ready for a new run: refused (:class:`ConfigError`) when it holds a
    run already, unless ``overwrite``, which first removes that run's outputs."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} is a file")
    if holds_run(run_dir):
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with: scalezero train --resume {run_dir}, "
                "or choose a new --out (or pass --overwrite to replace it)"
            )
        for name in (*RUN_OUTPUTS, *(p.name for p in run_dir.glob("rank[0-9]*"))):
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def default_run_dir(suite: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<suite>-s<seed>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``, ... added when a run
    of the same second exists: two runs never share a default directory."""
    stem = f"{Path(suite).name}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(root).mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = Path(root) / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # reserves the name: a second process of the same second takes the next
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"no free run directory name under {root} for {stem}")
