"""Queue snapshots as SQL text: the export's fixed form and its strict parser.

dbExportQueueSQL writes one statement per row, in this exact form:

    INSERT INTO <table> (<every column of the table, in schema order>) VALUES (<literals>);

for the tables jobs (by id), job_dependencies (by job, then dependency) and
chunks (by job, then chunk number), in that order. Literals are NULL, true,
false, numbers (integers for integer columns, Python's repr for floats),
'strings' (a quote doubled inside), 'ISO 8601'::timestamptz for times,
'{...}'::jsonb for JSON (keys sorted, compact) and ARRAY['a', 'b']::text[]
for text arrays. A string may span lines (notes with line breaks); every
statement starts on a new line.

dbImportQueueSQL accepts exactly that grammar, and only for those tables with
exactly their columns: the text is tokenised and parsed here, values are
type-checked against the column, and the service inserts them with bound
parameters. Nothing of the text ever reaches the database as SQL. Anything
else (another table, DDL, a second statement on a line, a comment, an
unbalanced quote, a value of the wrong type, too large input) is refused with
the number of the first offending line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Integer,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from muster_services.core.errors import InvalidArgument
from muster_services.jobs.domain import folder_cycle
from muster_services.jobs.tables import chunks, job_dependencies, jobs

TABLES: dict[str, Table] = {"jobs": jobs, "job_dependencies": job_dependencies, "chunks": chunks}
MAX_SQL_BYTES = 64 * 1024 * 1024
_INT64 = 2**63 - 1


def column_kind(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, BigInteger | Integer):
        return "int"
    if isinstance(kind, Double):
        return "float"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, DateTime):
        return "timestamp"
    if isinstance(kind, JSONB):
        return "jsonb"
    if isinstance(kind, ARRAY):
        return "text[]"
    if isinstance(kind, Text):
        return "text"
    raise TypeError(f"no snapshot form for column {column}")  # a schema change needs one


# --- export ------------------------------------------------------------------------


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_literal(kind: str, value: Any) -> str:
    if value is None:
        return "NULL"
    if kind == "int":
        return str(int(value))
    if kind == "float":
        return repr(float(value))
    if kind == "bool":
        return "true" if value else "false"
    if kind == "timestamp":
        return _quote(value.astimezone(UTC).isoformat()) + "::timestamptz"
    if kind == "jsonb":
        return _quote(json_text(value)) + "::jsonb"
    if kind == "text[]":
        return "ARRAY[" + ", ".join(_quote(v) for v in value) + "]::text[]"
    return _quote(str(value))


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_insert(table: Table, row: Mapping[str, Any]) -> str:
    names = ", ".join(c.name for c in table.columns)
    values = ", ".join(format_literal(column_kind(c), row[c.name]) for c in table.columns)
    return f"INSERT INTO {table.name} ({names}) VALUES ({values});"


def export_sql(rows: Mapping[str, list[dict[str, Any]]]) -> str:
    lines = [format_insert(TABLES[name], row) for name in TABLES for row in rows.get(name, [])]
    return "".join(line + "\n" for line in lines)


# --- import: tokens ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>[ \n]+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<cast>::)
  | (?P<punct>[(),;\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, word, cast, punct, end
    text: str
    line: int


def tokens(sql: str) -> Iterator[Token]:
    """The tokens of `sql`; anything outside the grammar's alphabet (comments
    start with '-' or '/', quotes left open) is refused at its line."""
    position, line = 0, 1
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        if match is None:
            snippet = sql[position : position + 20].split("\n")[0]
            if sql[position] == "'":
                raise InvalidArgument(f"sql: line {line}: unbalanced quote")
            raise InvalidArgument(f"sql: line {line}: unexpected text {snippet!r}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind != "space":
            yield Token(kind, value, line)
        line += value.count("\n")
        position = match.end()
    yield Token("end", "", line)


# --- import: statements ------------------------------------------------------------------


@dataclass
class ParsedQueue:
    """Rows of each table as column -> Python value, and each row's line."""

    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in TABLES}
    )
    lines: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name in TABLES})


class _Parser:
    def __init__(self, sql: str) -> None:
        self._tokens = tokens(sql)
        self._current = next(self._tokens)
        self._last_line = 0  # line of the previous statement's ';'

    def _fail(self, what: str, line: int | None = None) -> InvalidArgument:
        return InvalidArgument(f"sql: line {line or self._current.line}: {what}")

    def _next(self) -> Token:
        token = self._current
        self._current = next(self._tokens)
        return token

    def _expect(self, kind: str, text: str | None = None) -> Token:
        token = self._current
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            got = token.text[:40] or "the end of the text"
            raise self._fail(f"expected {wanted}, got {got!r}")
        return self._next()

    def parse(self) -> ParsedQueue:
        parsed = ParsedQueue()
        while self._current.kind != "end":
            line = self._current.line
            if line == self._last_line:
                raise self._fail("a second statement on the same line")
            table, row = self._statement()
            parsed.rows[table].append(row)
            parsed.lines[table].append(line)
        return parsed

    def _statement(self) -> tuple[str, dict[str, Any]]:
        start = self._current.line
        for keyword in ("INSERT", "INTO"):
            self._expect("word", keyword)
        name = self._expect("word").text
        table = TABLES.get(name)
        if table is None:
            raise self._fail(
                f"table {name[:40]!r} is not a queue table ({', '.join(TABLES)})", start
            )
        columns = self._list(lambda: self._expect("word").text)
        expected = [c.name for c in table.columns]
        if columns != expected:
            raise self._fail(
                f"the columns of {name} must be ({', '.join(expected)}) in this order", start
            )
        self._expect("word", "VALUES")
        values = self._list(self._literal)
        if len(values) != len(columns):
            raise self._fail(f"{len(columns)} values expected, got {len(values)}", start)
        self._last_line = self._expect("punct", ";").line
        row = {
            column.name: _checked(column, raw, start)
            for column, raw in zip(table.columns, values, strict=True)
        }
        return name, row

    def _list(self, item: Any) -> list[Any]:
        self._expect("punct", "(")
        items = [item()]
        while self._current.text == ",":
            self._next()
            items.append(item())
        self._expect("punct", ")")
        return items

    def _literal(self) -> tuple[str, Any]:
        """(form, value): form is null, bool, number, string, timestamptz,
        jsonb or array."""
        token = self._next()
        if token.kind == "word" and token.text in ("NULL", "true", "false"):
            if token.text == "NULL":
                return "null", None
            return "bool", token.text == "true"
        if token.kind == "number":
            return "number", token.text
        if token.kind == "string":
            value = token.text[1:-1].replace("''", "'")
            if self._current.kind == "cast":
                self._next()
                cast = self._expect("word").text
                if cast not in ("timestamptz", "jsonb"):
                    raise self._fail(f"cast to {cast[:40]!r} is not part of a snapshot")
                return cast, value
            return "string", value
        if token.kind == "word" and token.text == "ARRAY":
            self._expect("punct", "[")
            items: list[str] = []
            while self._current.kind == "string":
                items.append(self._next().text[1:-1].replace("''", "'"))
                if self._current.text != ",":
                    break
                self._next()
            self._expect("punct", "]")
            self._expect("cast")
            self._expect("word", "text")
            self._expect("punct", "[")
            self._expect("punct", "]")
            return "array", items
        got = token.text[:40] or "the end of the text"
        raise self._fail(f"expected a value, got {got!r}", token.line)


def _checked(column: Column[Any], raw: tuple[str, Any], line: int) -> Any:
    """The Python value of a literal for `column`, refused if it does not fit."""
    form, value = raw
    kind = column_kind(column)

    def wrong() -> InvalidArgument:
        return InvalidArgument(f"sql: line {line}: {column.table.name}.{column.name}: not a {kind}")

    if form == "null":
        if not column.nullable:
            raise InvalidArgument(f"sql: line {line}: {column.table.name}.{column.name}: NULL")
        return None
    if kind == "int":
        if form != "number" or not re.fullmatch(r"-?\d+", value):
            raise wrong()
        number = int(value)
        if abs(number) > _INT64:
            raise wrong()
        return number
    if kind == "float":
        if form != "number":
            raise wrong()
        result = float(value)
        if not math.isfinite(result):
            raise wrong()
        return result
    if kind == "bool":
        if form != "bool":
            raise wrong()
        return value
    if kind == "text":
        if form != "string" or "\x00" in value:
            raise wrong()
        return value
    if kind == "timestamp":
        if form != "timestamptz":
            raise wrong()
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise wrong() from None
        if stamp.tzinfo is None:
            raise wrong()
        return stamp
    if kind == "jsonb":
        if form != "jsonb":
            raise wrong()
        try:
            return json.loads(value)
        except ValueError:
            raise wrong() from None
    if form != "array":  # text[]
        raise wrong()
    return value


def parse_sql(sql: str) -> ParsedQueue:
    """Parse a queue snapshot; raises InvalidArgument naming the first bad line."""
    if len(sql.encode()) > MAX_SQL_BYTES:
        raise InvalidArgument(f"sql: at most {MAX_SQL_BYTES} bytes, got {len(sql.encode())}")
    return _Parser(sql).parse()


# --- JSON form of rows (the backup store's snapshots) -----------------------------------


def row_to_json(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values: times become ISO 8601 text."""
    out: dict[str, Any] = {}
    for column in table.columns:
        value = row[column.name]
        if value is not None and column_kind(column) == "timestamp":
            value = value.astimezone(UTC).isoformat()
        out[column.name] = value
    return out


def row_from_json(table: Table, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of row_to_json, for the columns the table still has."""
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.name not in raw:
            continue  # a column added after the snapshot: its default applies
        value = raw[column.name]
        if value is not None and column_kind(column) == "timestamp":
            value = datetime.fromisoformat(value)
        out[column.name] = value
    return out


def check_references(parsed: ParsedQueue, known_templates: set[int]) -> None:
    """Refuse a snapshot whose rows do not hold together, at the first bad line:
    duplicate ids, parents that are not folders of the snapshot, folder
    cycles, dependencies or chunks of jobs that are not in it, unknown
    templates."""
    kinds: dict[int, str] = {}
    parents: dict[int, int | None] = {}
    job_rows = parsed.rows["jobs"]
    for row, line in zip(job_rows, parsed.lines["jobs"], strict=True):
        if row["id"] in kinds:
            raise InvalidArgument(f"sql: line {line}: job {row['id']} appears twice")
        kinds[row["id"]] = row["kind"]
        parents[row["id"]] = row["parent_id"]
    for row, line in zip(job_rows, parsed.lines["jobs"], strict=True):
        parent = row["parent_id"]
        if parent is not None and kinds.get(parent) != "folder":
            raise InvalidArgument(
                f"sql: line {line}: jobs.parent_id {parent} is not a folder of the snapshot"
            )
        template = row["template_id"]
        if template is not None and template not in known_templates:
            raise InvalidArgument(f"sql: line {line}: jobs.template_id {template} is unknown")
    looping = folder_cycle(parents)
    if looping is not None:
        line = parsed.lines["jobs"][[r["id"] for r in job_rows].index(looping)]
        raise InvalidArgument(f"sql: line {line}: job {looping} is inside itself")
    seen_pairs: set[tuple[int, int]] = set()
    for row, line in zip(
        parsed.rows["job_dependencies"], parsed.lines["job_dependencies"], strict=True
    ):
        pair = (row["job_id"], row["depends_on_job_id"])
        if pair[0] not in kinds or pair[1] not in kinds or pair in seen_pairs:
            raise InvalidArgument(f"sql: line {line}: dependency {pair} is not of the snapshot")
        seen_pairs.add(pair)
    seen_chunks: set[tuple[int, int]] = set()
    for row, line in zip(parsed.rows["chunks"], parsed.lines["chunks"], strict=True):
        key = (row["job_id"], row["chunk_number"])
        if kinds.get(key[0]) != "job" or key in seen_chunks:
            raise InvalidArgument(f"sql: line {line}: chunk {key} is not of a job of the snapshot")
        seen_chunks.add(key)
