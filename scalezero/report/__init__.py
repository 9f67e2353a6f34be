"""Run reports: a Markdown table of per-task returns and PNG learning curves."""

from scalezero.report.report import write_report

__all__ = ["write_report"]
