"""Reading run directories back: config, metrics and task specs, grouped by setting.

Runs whose resolved configs differ only in the seed (and device/thread settings) form one
*group*; a report draws each group as one line with a band over its seeds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalezero.config import Config, ConfigError, load_config
from scalezero.tasks import TaskSpec


@dataclass
class RunData:
    """One finished run directory."""

    path: Path
    config: Config
    metrics: dict[str, Any]
    specs: list[TaskSpec]

    @property
    def task_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def summary(self) -> dict[str, Any]:
        return self.metrics["summary"]

    def setting_key(self) -> str:
        """Hash of the config without seed, device and thread count."""
        data = self.config.to_dict()
        for key in ("seed", "device", "torch_threads"):
            data["train"].pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class RunGroup:
    """Runs of one setting (several seeds)."""

    label: str
    runs: list[RunData]

    @property
    def task_names(self) -> list[str]:
        return self.runs[0].task_names


def load_run(path: str | Path) -> RunData:
    """Load a finished run directory; a clear ConfigError when it is not one."""
    from scalezero.training.setup import resolve_tasks

    path = Path(path)
    if not (path / "config.yaml").exists():
        raise ConfigError(f"{path} is not a run directory (no config.yaml)")
    if not (path / "metrics.json").exists():
        raise ConfigError(f"{path} has no metrics.json (the run has not finished; reports need a finished run)")
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}/metrics.json is not valid JSON: {exc}") from None
    config = load_config(path / "config.yaml")
    tasks, _ = resolve_tasks(config)
    return RunData(path, config, metrics, [t.spec for t in tasks])


def group_runs(runs: list[RunData]) -> list[RunGroup]:
    """Group runs by setting, in the order first seen; labels come from directory names.

    A group holds distinct seeds only: a run repeating a seed its setting has already (the
    same run twice, or a copy) is a group of its own, labelled by its directory, so it is
    never counted as another seed."""
    groups: list[list[RunData]] = []
    for run in runs:
        home = next((g for g in groups if g[0].setting_key() == run.setting_key() and all(r.config.train.seed != run.config.train.seed for r in g)), None)
        if home is None:
            groups.append([run])
        else:
            home.append(run)
    out = []
    for members in groups:
        label = re.sub(r"[-_]s(eed)?\d+(-\d{8}-\d{6}(-\d+)?)?$", "", members[0].path.resolve().name) or members[0].config.suite
        out.append(RunGroup(label, members))
    labels = [g.label for g in out]
    for g in out:  # disambiguate equal labels: by setting, then by directory
        if labels.count(g.label) > 1:
            g.label = f"{g.label} ({g.runs[0].setting_key()[:6]})"
    labels = [g.label for g in out]
    for g in out:
        if labels.count(g.label) > 1:
            g.label = f"{g.label} [{g.runs[0].path.resolve().name}]"
    return out
