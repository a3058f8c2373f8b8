"""The CSV files provincial IT edits by hand (units, the old -> new unit mapping, the officers expected per
unit): UTF-8 with or without BOM, `#` comment lines (provenance) and blank lines anywhere, a header row
naming the columns, one record per line.

Every row keeps its line number in the file as an editor shows it, comments and blank lines counted, so
a loader's error names the line provincial IT has to fix. The loaders own their checks and their words;
this module only reads.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int  # in the file, from 1
    cells: dict[str, str]  # column -> cell, stripped; "" for a cell the line lacks
    width: int  # how many cells the line has (more than the header's: cells no column names)


@dataclass(frozen=True, slots=True)
class CsvTable:
    header_line: int  # 0: the file holds nothing but comments and blank lines
    columns: tuple[str, ...]  # the header's names, stripped and in lower case
    rows: tuple[CsvRow, ...]


def read_csv(source: str | Path) -> CsvTable:
    """The header and rows of a CSV file (a path, or its text). UnicodeDecodeError when a file is not UTF-8."""
    text = source.read_text(encoding="utf-8-sig") if isinstance(source, Path) else source.removeprefix("\ufeff")
    kept = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not _comment(line)]
    if not kept:
        return CsvTable(0, (), ())
    (header_line, header), *body = kept
    columns = tuple(name.strip().lower() for name in _cells(header))
    rows = []
    for n, line in body:
        cells = _cells(line)
        named = {c: cell.strip() for c, cell in zip(columns, cells, strict=False)}
        rows.append(CsvRow(n, {c: named.get(c, "") for c in columns}, len(cells)))
    return CsvTable(header_line, columns, tuple(rows))


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _cells(line: str) -> list[str]:
    return next(csv.reader([line]), [])
