"""Classify aria2 error codes (tellStatus `errorCode`) into what the dispatcher does next."""

from __future__ import annotations

from dispatcher.models import ErrorClass
from worker_agent.urlpolicy import URL_DENIED_ERROR_CODE

TRANSIENT_CODES = frozenset({1, 2, 5, 6, 7, 19, 29})
PERMANENT_CODES = frozenset(
    {3, 4, 8, 10, 11, 12, 13, 20, 21, 22, 23, 24, 25, 26, 27, 28, 32, URL_DENIED_ERROR_CODE}
)
WORKER_LOCAL_CODES = frozenset({9, 14, 15, 16, 17, 18})

DESCRIPTIONS = {
    1: "unknown error (often a refused connection)",
    2: "timeout",
    3: "resource not found (404)",
    4: "too many 'resource not found' answers",
    5: "download too slow",
    6: "network problem",
    7: "unfinished downloads at shutdown",
    8: "server does not support resume",
    9: "not enough disk space",
    10: "piece length differs from the control file",
    11: "same file already being downloaded",
    12: "same info hash already being downloaded",
    13: "file already exists",
    14: "renaming failed",
    15: "could not open existing file",
    16: "could not create or truncate file",
    17: "file I/O error",
    18: "could not create directory",
    19: "name resolution failed",
    20: "could not parse Metalink",
    21: "FTP command failed",
    22: "bad HTTP response (e.g. 403, 410, 500)",
    23: "too many redirects",
    24: "HTTP authorization failed",
    25: "could not parse bencoded file",
    26: ".torrent file corrupted or missing information",
    27: "bad magnet URI",
    28: "bad or unrecognised option",
    29: "server overloaded or in maintenance",
    30: "could not parse JSON-RPC request",
    31: "removed",
    32: "checksum mismatch",
    URL_DENIED_ERROR_CODE: "URL denied by the worker's URL policy",
}


def classify_error(code: int | None) -> ErrorClass:
    """Transient errors are retried, permanent ones fail at once, worker-local ones move.

    A missing code means the agent failed before aria2 could run it: treated as transient.
    Unknown codes are transient too: a retry is cheaper than losing a task to a new code.
    """
    if code in PERMANENT_CODES:
        return ErrorClass.PERMANENT
    if code in WORKER_LOCAL_CODES:
        return ErrorClass.WORKER_LOCAL
    return ErrorClass.TRANSIENT


def describe_error(code: int | None, message: str) -> str:
    """One line for people: aria2's message, with the code's meaning when it adds anything."""
    message = (message or "").strip()
    if code is None:
        return message or "agent error"
    if code == URL_DENIED_ERROR_CODE:
        return message or DESCRIPTIONS[code]
    meaning = DESCRIPTIONS.get(code, "aria2 error")
    head = f"aria2 error {code} ({meaning})"
    return f"{head}: {message}" if message else head
