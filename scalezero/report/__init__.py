"""Run reports: a self-contained HTML page and Markdown with PNG plots, for one or several runs."""

from scalezero.report.report import write_report

__all__ = ["write_report"]
