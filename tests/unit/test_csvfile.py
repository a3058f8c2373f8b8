"""The reader of the CSV files provincial IT edits by hand (appliance.csvfile): line numbers as an editor
shows them, whatever comments and blank lines come before."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.csvfile import CsvRow, read_csv

TEXT = (
    "\ufeff# from the province's register, 2026-03\n"
    "\n"
    " Code , Name ,kind\n"
    "44001,Quảng Phú,xã\n"
    "   # a comment between rows\n"
    "\n"
    '44002,"Đồng Hới, phường",phường,extra\n'
    "44003\n"
)


def test_rows_keep_their_line_in_the_file() -> None:
    table = read_csv(TEXT)
    assert table.header_line == 3 and table.columns == ("code", "name", "kind")
    assert table.rows == (
        CsvRow(4, {"code": "44001", "name": "Quảng Phú", "kind": "xã"}, 3),
        CsvRow(7, {"code": "44002", "name": "Đồng Hới, phường", "kind": "phường"}, 4),  # one cell too many
        CsvRow(8, {"code": "44003", "name": "", "kind": ""}, 1),
    )


def test_a_file_reads_as_its_text_and_one_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text(TEXT, encoding="utf-8")
    assert read_csv(path) == read_csv(TEXT)
    path.write_bytes(b"code,name\n44001,\xd0\xf4ng H\xf4\xec\n")  # Windows-1258, as an old Excel saves it
    with pytest.raises(UnicodeDecodeError):
        read_csv(path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n\n  # and another\n"])
def test_nothing_but_comments_has_no_header(text: str) -> None:
    table = read_csv(text)
    assert (table.header_line, table.columns, table.rows) == (0, (), ())
