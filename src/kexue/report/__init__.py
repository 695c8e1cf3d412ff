"""The evidence report: ``results.json``, ``index.md``, ``index.html`` and PNG plots."""

from kexue.report.write import load_results, summary_table, write_report

__all__ = ["load_results", "summary_table", "write_report"]
