"""Per-job HTML report: summary, coverage strip and joint-angle plots in one self-contained page.

    python -m outputs.report RESULTS.jsonl [-o report.html]

``build_report(messages)`` returns the page for one job's public messages
(``job_start``, ``frame``s, ``job_end``); ``write_report(messages, path)`` writes it.
"""
from outputs.report.page import build_report, read_messages, write_report

__all__ = ["build_report", "read_messages", "write_report"]
