import pytest

from kexue.evidence.tables import markdown_table


def test_markdown_table_formats_floats_and_escapes_pipes():
    text = markdown_table(["a", "b"], [["x|y", 1.23456], [3, "z"]], digits=3)
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1.235 |", "| 3 | z |"]


def test_markdown_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["a", "b", "c"], [[1, 2]])
