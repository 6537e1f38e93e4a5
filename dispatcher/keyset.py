"""Keyset (seek) pagination: pages cost the same at row 50 and at row 100,000.

A page is asked for with an opaque cursor naming the sort key of the row it starts after (or
before); the database seeks there through an index instead of counting past OFFSET rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db.models import Model, Q, QuerySet

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Page(Generic[M]):
    rows: list[M]
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The key values in `cursor`, or None when it is missing or malformed (first page)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(values, list) or len(values) != size:
        return None
    if not all(isinstance(v, int | str) and not isinstance(v, bool) for v in values):
        return None
    return values


def _beyond(ordering: list[str], values: list[Any]) -> Q:
    """Rows strictly after `values` in `ordering` (fields prefixed with '-' descend)."""
    condition = Q()
    for index, field in enumerate(ordering):
        name = field.lstrip("-")
        lookup = "lt" if field.startswith("-") else "gt"
        step = Q(**{f"{name}__{lookup}": values[index]})
        for prev_index, prev in enumerate(ordering[:index]):
            step &= Q(**{prev.lstrip("-"): values[prev_index]})
        condition |= step
    return condition


def _flip(ordering: list[str]) -> list[str]:
    return [f[1:] if f.startswith("-") else f"-{f}" for f in ordering]


def keyset_page(
    qs: QuerySet[M],
    *,
    ordering: list[str],
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> Page[M]:
    """One page of `qs` in `ordering` (whose last field must be unique, e.g. ``-id``)."""
    names = [f.lstrip("-") for f in ordering]

    def key(row: M) -> str:
        return encode_cursor([getattr(row, n) for n in names])

    before_values = decode_cursor(before, len(ordering))
    after_values = decode_cursor(after, len(ordering))
    if before_values is not None:
        rows = list(
            qs.filter(_beyond(_flip(ordering), before_values)).order_by(*_flip(ordering))[
                : size + 1
            ]
        )
        has_more = len(rows) > size
        rows = list(reversed(rows[:size]))
        return Page(
            rows=rows,
            next_cursor=key(rows[-1]) if rows else None,
            prev_cursor=key(rows[0]) if rows and has_more else None,
        )
    if after_values is not None:
        qs = qs.filter(_beyond(ordering, after_values))
    rows = list(qs.order_by(*ordering)[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows=rows,
        next_cursor=key(rows[-1]) if rows and has_more else None,
        prev_cursor=key(rows[0]) if rows and after_values is not None else None,
    )
