"""Allowlist of per-task aria2 options a user may set, with their types and bounds.

Contract: :func:`validate_task_options` returns a new dict that is safe to hand to
``aria2.addUri`` (every value a string, or a list of strings for ``header``), or raises
:class:`OptionError` naming the first bad option. Anything not listed here is refused: aria2
silently ignores unknown names and non-string values, and options such as ``dir``, ``gid``,
``log`` or proxies would let a user write anywhere or redirect traffic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SIZE = re.compile(r"^[0-9]{1,12}[KkMm]?$")
_INT = re.compile(r"^[0-9]{1,9}$")
_FLOAT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,6})?$")
_CHECKSUM = re.compile(r"^(md5|sha-1|sha-224|sha-256|sha-384|sha-512|adler32)=[0-9a-fA-F]{8,128}$")
_SELECT_FILE = re.compile(r"^[0-9]{1,6}(-[0-9]{1,6})?(,[0-9]{1,6}(-[0-9]{1,6})?)*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:.*$")
_MAX_TEXT = 2048
MAX_HEADERS = 32


class OptionError(ValueError):
    """A per-task option is not allowed or has a bad value; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"option {option!r}: {message}")
        self.option = option


def _size_to_bytes(value: str) -> int:
    multiplier = {"k": 1024, "m": 1024 * 1024}.get(value[-1].lower(), 1)
    digits = value[:-1] if multiplier != 1 else value
    return int(digits) * multiplier


def _int_between(low: int, high: int) -> Callable[[str, str], None]:
    def check(name: str, value: str) -> None:
        if not _INT.match(value) or not low <= int(value) <= high:
            raise OptionError(name, f"expected an integer string from {low} to {high}")

    return check


def _size_between(low: int, high: int) -> Callable[[str, str], None]:
    def check(name: str, value: str) -> None:
        if not _SIZE.match(value) or not low <= _size_to_bytes(value) <= high:
            raise OptionError(name, f"expected a size like '1M' between {low} and {high} bytes")

    return check


def _non_negative_float(name: str, value: str) -> None:
    if not _FLOAT.match(value) or not math.isfinite(float(value)):
        raise OptionError(name, "expected a non-negative number string")


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[str, str], None]:
    def check(name: str, value: str) -> None:
        if not regex.match(value):
            raise OptionError(name, f"expected {what}")

    return check


def _text(name: str, value: str) -> None:
    if len(value) > _MAX_TEXT:
        raise OptionError(name, f"longer than {_MAX_TEXT} characters")


def _basename(name: str, value: str) -> None:
    if not value or value in {".", ".."} or value.startswith(".."):
        raise OptionError(name, "must be a plain file name")
    if "/" in value or "\\" in value or len(value) > 255:
        raise OptionError(name, "must be a file name without any directory part")


def _header(name: str, value: str) -> None:
    _text(name, value)
    if not _HEADER.match(value):
        raise OptionError(name, "expected 'Name: value'")


def _bt_tracker(name: str, value: str) -> None:
    _text(name, value)
    for uri in value.split(","):
        if not re.match(r"^(https?|udp)://[^\s]+$", uri):
            raise OptionError(name, f"tracker {uri!r} is not an http(s):// or udp:// URI")


_CHECKS: dict[str, Callable[[str, str], None]] = {
    "split": _int_between(1, 64),
    "max-connection-per-server": _int_between(1, 16),
    "min-split-size": _size_between(1024 * 1024, 1024 * 1024 * 1024),
    "max-download-limit": _size_between(0, 10**12),
    "max-upload-limit": _size_between(0, 10**12),
    "lowest-speed-limit": _size_between(0, 10**12),
    "checksum": _pattern(_CHECKSUM, "'<algorithm>=<hex digest>', e.g. 'sha-256=...'"),
    "header": _header,
    "user-agent": _text,
    "referer": _text,
    "out": _basename,
    "select-file": _pattern(_SELECT_FILE, "indexes like '1,3-5'"),
    "seed-time": _non_negative_float,
    "seed-ratio": _non_negative_float,
    "bt-tracker": _bt_tracker,
    "max-tries": _int_between(0, 100),
    "timeout": _int_between(1, 600),
}

ALLOWED_TASK_OPTIONS = frozenset(_CHECKS)


def _check_string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise OptionError(name, f"value must be a string, got {type(value).__name__}")
    if _CONTROL_CHARS.search(value):
        raise OptionError(name, "value contains a control character")
    return value


def validate_task_options(options: Mapping[str, object]) -> dict[str, str | list[str]]:
    """Return a validated copy of ``options`` or raise :class:`OptionError`.

    Every value must be a string; ``header`` may also be a list of strings. Control characters
    are refused everywhere because aria2's session file stores ``name=value`` lines unescaped.
    """
    clean: dict[str, str | list[str]] = {}
    for name, value in options.items():
        if not isinstance(name, str) or name not in _CHECKS:
            raise OptionError(str(name), "not an allowed per-task option")
        check = _CHECKS[name]
        if name == "header" and isinstance(value, list):
            if len(value) > MAX_HEADERS:
                raise OptionError(name, f"at most {MAX_HEADERS} headers per task")
            headers = [_check_string(name, item) for item in value]
            for header in headers:
                check(name, header)
            clean[name] = headers
            continue
        text = _check_string(name, value)
        check(name, text)
        clean[name] = text
    return clean
