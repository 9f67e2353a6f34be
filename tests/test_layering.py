"""Package dependencies run one way: ``report`` reads ``training``, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import scalezero

ROOT = Path(scalezero.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_training_never_imports_report():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m == "scalezero.report" or m.startswith("scalezero.report."))
        for path in sorted((ROOT / "training").rglob("*.py"))
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"training/ imports report/: {offenders}"
    assert "scalezero.training.setup" in _imports(ROOT / "report" / "runs.py")  # the dependency that stays
