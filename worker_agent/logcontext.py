"""Which task and which worker a log line is about, stamped on every record.

The ids live in a context variable, so each thread, each asyncio task and each sync view that
asgiref runs in a thread (with a copy of the caller's context) sees only its own. `log_context`
sets them for a block and resets its token on the way out, so an id set while one request,
websocket message or task is handled never reaches the next one. `LogContextFilter` (installed
on every handler by `worker_agent.logs.logging_config`) copies them onto each record; the plain
format shows ``[task=42 worker=worker1]`` (``-`` where unset), the JSON format has ``task_id``
and ``worker`` fields.

Plain Python, like the rest of the agent: the dispatcher imports it too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

FIELDS = ("task_id", "worker")

P = ParamSpec("P")
R = TypeVar("R")

_current: ContextVar[Mapping[str, Any]] = ContextVar(
    "ariacluster_log_context", default=MappingProxyType({})
)


def current_log_context() -> dict[str, Any]:
    """The ids set for the code running now (empty outside any `log_context`)."""
    return dict(_current.get())


@contextmanager
def log_context(*, task_id: int | None = None, worker: str | None = None) -> Iterator[None]:
    """Stamp what is logged inside the block with these ids; None keeps the outer value.

    On exit the outer values come back, also when the block raises.
    """
    given = {"task_id": task_id, "worker": worker}
    fields = {name: value for name, value in given.items() if value is not None and value != ""}
    token = _current.set(MappingProxyType({**_current.get(), **fields}))
    try:
        yield
    finally:
        _current.reset(token)


def _task_id_of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int | None:
    if kwargs.get("task_id") is not None:
        return int(kwargs["task_id"])
    for value in (*args, *kwargs.values()):
        task_id = getattr(value, "task_id", None)
        if isinstance(task_id, int):
            return task_id
    return None


def with_task_log_context(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` in a `log_context` for the task it handles: its ``task_id`` keyword argument,
    else the first argument with an int ``task_id`` attribute (a journal entry, an assignment).
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with log_context(task_id=_task_id_of(args, kwargs)):
            return func(*args, **kwargs)

    return wrapper


class LogContextFilter(logging.Filter):
    """Copy the current log context onto each record it passes.

    Ids the logging call gave itself (``extra={"task_id": 7}``) win. `defaults` fill in what no
    context set: the agent passes its worker name, so every thread it runs names it.
    """

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.defaults = {k: v for k, v in (defaults or {}).items() if k in FIELDS and v}

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        for name in FIELDS:
            if getattr(record, name, None) is not None:
                continue
            value = current.get(name, self.defaults.get(name))
            if value is None:
                # `extra={"worker": None}`: unset, so the formatters show "-" / null.
                record.__dict__.pop(name, None)
            else:
                setattr(record, name, value)
        return True
