"""Set-based SQL for the hot path: one statement per batch, not one per row.

On PostgreSQL rows travel as one JSON document expanded by `jsonb_to_recordset` (as fast as COPY
here, and unlike COPY FROM it works on tables with row-level security). Other databases (the
embedded SQLite default) run the same operations row by row on the same connection.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, models
from django.db.models import F, Func, Q, Value
from django.db.models.fields.tuple_lookups import Tuple, TupleLessThan
from django.db.models.lookups import Exact, GreaterThan


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@contextmanager
def server_cursor() -> Iterator[Any]:
    """A psycopg cursor with server-side parameter binding on Django's connection (same transaction).

    Django binds parameters client-side, quoting every value into the SQL text; for the one large JSON
    document of a bulk statement that costs more than the statement. Errors are still translated into
    django.db exceptions."""
    with connection.wrap_database_errors:
        cursor = _new_cursor()
        with cursor:
            yield _logged(cursor)


def _new_cursor() -> Any:
    import psycopg
    from psycopg.types.string import TextLoader

    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    # uuid columns come back as canonical strings, the form ids take on the hot path (sentinai.kernel.ids).
    cursor.adapters.register_loader("uuid", TextLoader)
    return cursor


def _logged(cursor: Any) -> Any:
    return _LoggedCursor(cursor) if connection.queries_logged else cursor


@contextmanager
def pipeline() -> Iterator[None]:
    """Statements issued inside go to PostgreSQL without waiting for each one's answer: the
    connection waits only where a caller reads a result (a RETURNING, a fetch) and once at the end.
    A round trip costs this machine about 165 µs of CPU, client and server, against about 40 µs for
    a statement sent in a pipeline (docs/performance.md, "Fewer round trips per batch"). An error
    surfaces at the next read or at the end, as django.db's exception, and aborts the transaction
    like any failed statement.

    Only for this module's statements and raw reads: the ORM reads cursor.rowcount right after an
    UPDATE or DELETE (save() decides on it whether to INSERT), and in a pipeline that count is not
    known yet, so ORM writes stay outside. Re-entrant (an inner block adds no sync); a no-op on other
    databases."""
    if not is_postgres():
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    if raw.pgconn.pipeline_status:  # already in one (PipelineStatus.OFF is 0)
        yield
        return
    with connection.wrap_database_errors, raw.pipeline():
        yield


def select(sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple]:
    """Rows of one read on the server cursor (PostgreSQL): for hot-path reads of fixed text, which
    psycopg prepares after a few executions, where building the ORM query would cost more than
    running it. uuid columns come back as strings, jsonb as text."""
    with server_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class _LoggedCursor:
    """A server cursor whose statements Django's query log sees (DEBUG, assertNumQueries)."""

    def __init__(self, cursor):
        self._cursor = cursor

    def execute(self, query, params=None):
        started = time.monotonic()
        try:
            return self._cursor.execute(query, params)
        finally:
            connection.queries_log.append({"sql": query, "time": f"{time.monotonic() - started:.3f}"})

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _columns(model: type[models.Model], names: Sequence[str]) -> list[tuple[str, str]]:
    """(column, SQL type) for each field name, as jsonb_to_recordset needs them."""
    return _columns_cached(model, tuple(names), connection.vendor)


@functools.cache
def _columns_cached(model: type[models.Model], names: tuple[str, ...], vendor: str) -> list[tuple[str, str]]:
    result = []
    for name in names:
        field = model._meta.get_field(name)
        db_type = field.db_type(connection)
        if isinstance(field, models.JSONField):
            db_type = "jsonb"
        result.append((field.column, db_type))
    return result


def _recordset(columns: Sequence[tuple[str, str]]) -> str:
    return "jsonb_to_recordset(%s::jsonb) AS r(" + ", ".join(f'"{c}" {t}' for c, t in columns) + ")"


def _encode_rows(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], names: Sequence[str]) -> str:
    """The rows as one JSON array of objects keyed by column name."""
    if all(column == name for (column, _), name in zip(columns, names, strict=True)):
        return _json(rows)
    return _json([{column: row[name] for (column, _), name in zip(columns, names, strict=True)} for row in rows])


def insert(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple]:
    """INSERT rows (dicts of field name -> value; every row has the same keys).

    `conflict`: field names of a unique constraint; conflicting rows are skipped (DO NOTHING), and
    `returning` then only reports rows actually inserted.
    """
    if not rows:
        return []
    names = list(rows[0].keys())
    columns = _columns(model, names)
    table = model._meta.db_table
    column_list = ", ".join(f'"{c}"' for c, _ in columns)
    on_conflict = ""
    if conflict is not None:
        target = ", ".join(f'"{model._meta.get_field(n).column}"' for n in conflict)
        on_conflict = f" ON CONFLICT ({target}) DO NOTHING" if target else " ON CONFLICT DO NOTHING"
    returning_sql = ""
    if returning:
        returning_sql = " RETURNING " + ", ".join(f'"{model._meta.get_field(n).column}"' for n in returning)
    if is_postgres():
        sql, payload = _insert_from_recordset(model, rows)
        with server_cursor() as cursor:
            cursor.execute(f"{sql}{on_conflict}{returning_sql}", [payload])
            return cursor.fetchall() if returning else []
    with connection.cursor() as cursor:
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f'INSERT INTO "{table}" ({column_list}) VALUES ({placeholders}){on_conflict}{returning_sql}'
        fields = [model._meta.get_field(n) for n in names]
        out: list[tuple] = []
        for row in rows:
            params = [f.get_db_prep_save(row[f.name], connection) for f in fields]
            cursor.execute(sql, params)
            if returning:
                out.extend(cursor.fetchall())
        return out


def insert_later(model: type[models.Model], rows: Sequence[dict[str, Any]], *, returning: Sequence[str]):
    """INSERT rows now and read the `returning` columns later: returns a function that gives them.
    In a `pipeline` the statement is sent at once and its rows read when the function is called,
    which costs no round trip of its own once a later read, or the pipeline's end, has waited."""
    if not rows:
        return list
    if not is_postgres():
        inserted = insert(model, rows, returning=returning)
        return lambda: inserted
    sql, payload = _insert_from_recordset(model, rows)
    columns = ", ".join(f'"{model._meta.get_field(n).column}"' for n in returning)
    return select_later(f"{sql} RETURNING {columns}", [payload])


def select_later(sql: str, params: Sequence[Any] = ()) -> Callable[[], list[tuple]]:
    """PostgreSQL: run a statement on the server cursor now, read its rows later (as `select`, but
    returns a function that gives them; see `insert_later`)."""
    with connection.wrap_database_errors:
        cursor = _new_cursor()
        _logged(cursor).execute(sql, params)

    def fetch() -> list[tuple]:
        with connection.wrap_database_errors, cursor:
            return cursor.fetchall()

    return fetch


def insert_stamped(model: type[models.Model], rows: Sequence[dict[str, Any]], *, stamp: str) -> datetime | None:
    """INSERT rows whose `stamp` field the database sets (its db_default is Now(), the statement's time),
    and return that time, the same for every row. On PostgreSQL one statement: the insert in a WITH,
    whose outer SELECT reads the statement's time once, rather than a timestamp per row to parse back.
    Elsewhere (the embedded SQLite, one process) rows are inserted one by one, so the stamp is given
    here, once, from this process's clock."""
    if not rows:
        return None
    if not is_postgres():
        from django.utils import timezone

        at = timezone.now()
        insert(model, [{**row, stamp: at} for row in rows])
        return at
    sql, payload = _insert_from_recordset(model, rows)
    with server_cursor() as cursor:
        cursor.execute(f"WITH inserted AS ({sql}) SELECT statement_timestamp()", [payload])
        return cursor.fetchone()[0]


def insert_sql(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """PostgreSQL: the INSERT of `rows` from one JSON document, and that document, for a caller that
    adds its own clauses (ON CONFLICT, RETURNING) and runs it (`select_later`)."""
    return _insert_from_recordset(model, rows)


def _insert_from_recordset(model: type[models.Model], rows: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """PostgreSQL: the INSERT of `rows` from one JSON document (jsonb_to_recordset), and that document."""
    names = list(rows[0].keys())
    columns = _columns(model, names)
    column_list = ", ".join(f'"{c}"' for c, _ in columns)
    sql = f'INSERT INTO "{model._meta.db_table}" ({column_list}) SELECT {column_list} FROM {_recordset(columns)}'
    return sql, _encode_rows(rows, columns, names)


def upsert(
    model: type[models.Model], rows: Sequence[dict[str, Any]], *, unique: Sequence[str], update: Sequence[str]
) -> None:
    """INSERT rows, or UPDATE the `update` fields of the row whose `unique` fields (a unique
    constraint's field names) match: one statement for the batch. Fields a row leaves out get the
    model's Python default, as `Model(**values)` would give them (database defaults stay the
    database's). Rows of the same key keep the last one (a later decision supersedes an earlier one),
    which a single INSERT ... ON CONFLICT DO UPDATE requires."""
    if not rows:
        return
    given = tuple(rows[0])
    keys = [f.attname if f.attname in rows[0] else f.name for f in (model._meta.get_field(n) for n in unique)]
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in keys)] = {**_defaults(model, given), **row}
    rows = list(latest.values())
    names = list(rows[0].keys())
    columns = _columns(model, names)
    table = model._meta.db_table
    column_list = ", ".join(f'"{c}"' for c, _ in columns)
    target = ", ".join(f'"{model._meta.get_field(n).column}"' for n in unique)
    unique_fields = {model._meta.get_field(n).name for n in unique}
    sets = [
        f'"{model._meta.get_field(n).column}"' for n in update if model._meta.get_field(n).name not in unique_fields
    ]
    action = "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in sets) if sets else "DO NOTHING"
    sql = (
        f'INSERT INTO "{table}" ({column_list}) SELECT {column_list} FROM {_recordset(columns)} '
        f"ON CONFLICT ({target}) {action}"
    )
    with server_cursor() as cursor:
        cursor.execute(sql, [_encode_rows(rows, columns, names)])


def _defaults(model: type[models.Model], given: tuple[str, ...]) -> dict[str, Any]:
    """Python-side defaults of the concrete fields a row does not give (no auto ids, no db_default)."""
    return {field.attname: field.get_default() for field in _defaulted_fields(model, given)}


@functools.cache
def _defaulted_fields(model: type[models.Model], given: tuple[str, ...]) -> list[models.Field]:
    given_fields = {model._meta.get_field(n).name for n in given}
    return [
        field
        for field in model._meta.concrete_fields
        if field.name not in given_fields
        and not isinstance(field, models.AutoField)
        and field.db_default is models.NOT_PROVIDED
        and (field.has_default() or field.null)
    ]


def update(model: type[models.Model], key: str, rows: Sequence[dict[str, Any]], *, touch: str | None = None) -> int:
    """UPDATE rows identified by `key` (every row has the same keys). `touch`: a timestamp field set
    to the database's now(). Returns the rows updated (in a `pipeline`: -1, not known yet)."""
    if not rows:
        return 0
    names = list(rows[0].keys())
    if key not in names:
        raise ValueError(f"rows must carry the key field {key!r}")
    set_names = [n for n in names if n != key]
    columns = _columns(model, names)
    table = model._meta.db_table
    key_column = model._meta.get_field(key).column
    assignments = [f'"{model._meta.get_field(n).column}" = r."{model._meta.get_field(n).column}"' for n in set_names]
    if touch:
        assignments.append(f'"{model._meta.get_field(touch).column}" = CURRENT_TIMESTAMP')
    if is_postgres():
        payload = _encode_rows(rows, columns, names)
        sql = (
            f'UPDATE "{table}" AS t SET {", ".join(assignments)} '
            f'FROM {_recordset(columns)} WHERE t."{key_column}" = r."{key_column}"'
        )
        with server_cursor() as cursor:
            cursor.execute(sql, [payload])
            return cursor.rowcount
    with connection.cursor() as cursor:
        sets = [f'"{model._meta.get_field(n).column}" = %s' for n in set_names]
        if touch:
            sets.append(f'"{model._meta.get_field(touch).column}" = CURRENT_TIMESTAMP')
        sql = f'UPDATE "{table}" SET {", ".join(sets)} WHERE "{key_column}" = %s'
        fields = [model._meta.get_field(n) for n in set_names]
        key_field = model._meta.get_field(key)
        count = 0
        for row in rows:
            params = [f.get_db_prep_save(row[f.name], connection) for f in fields]
            params.append(key_field.get_db_prep_save(row[key], connection))
            cursor.execute(sql, params)
            count += cursor.rowcount
        return count


def uuid_list(values: Iterable[Any]) -> str:
    """A list of UUIDs as one text parameter, for `= ANY(string_to_array(%s, ',')::uuid[])`: sending
    a Python list makes the driver quote every element of the array on the way out."""
    return ",".join(str(v) for v in values)


ANY_UUIDS = "= ANY(string_to_array(%s, ',')::uuid[])"


def in_clause(values: Iterable[Any], *, uuids: bool = False) -> tuple[str, list[Any]]:
    """SQL fragment and params for "column <fragment>" meaning "column is one of values", on
    PostgreSQL (= ANY(array)) and SQLite (IN (...); UUIDs stored as 32-char hex)."""
    values = list(values)
    if is_postgres():
        return "= ANY(%s)", [values]
    if uuids:
        values = [v.hex if hasattr(v, "hex") else str(v).replace("-", "") for v in values]
    if not values:
        return "IN (NULL)", []
    return "IN (" + ", ".join(["%s"] * len(values)) + ")", values


def keyset_before(time_column: str, id_column: str, time: datetime, row_id: str) -> Q | TupleLessThan:
    """`(time_column, id_column) < (time, row_id)`, the keyset condition of a newest-first page.

    On PostgreSQL a row-value comparison, so the (tenant, ..., created_at, id) indexes seek straight
    to it. SQLite stores datetimes as text, the database's own `Now()` with milliseconds and Django's
    parameters with microseconds, so a textual comparison puts a row before a cursor at the same
    instant (pages repeat rows, or never end): there both sides are compared as julian days.
    Both ways each value is adapted by its column's field, as the database stores it.
    """
    if is_postgres():
        return TupleLessThan(Tuple(F(time_column), F(id_column)), (time, row_id))
    column, cursor = _julian_day(F(time_column)), _julian_day(Value(time, output_field=models.DateTimeField()))
    return Q(GreaterThan(cursor, column)) | Q(Exact(column, cursor), **{f"{id_column}__lt": row_id})


def _julian_day(expression) -> Func:
    return Func(expression, function="julianday", output_field=models.FloatField())
