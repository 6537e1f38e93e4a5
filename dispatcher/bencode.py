"""A small, defensive bencode codec for user-uploaded `.torrent` files.

Contract: :func:`decode` accepts exactly one bencoded value (no trailing bytes) and raises
:class:`BencodeError` for anything malformed, nested deeper than ``max_depth`` or holding more
than ``max_items`` values in total, so a hostile upload can neither recurse the parser to death
nor build a huge object graph. Integers are limited in digits; strings by the input length.
:func:`encode` is the inverse, used by the tests' torrent builder.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 200_000
_MAX_INT_DIGITS = 32


class BencodeError(ValueError):
    """The input is not a valid (or acceptably small) bencoded value."""


class _Decoder:
    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def fail(self, message: str) -> BencodeError:
        return BencodeError(f"{message} at byte {self.pos}")

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise self.fail(f"nested deeper than {self.max_depth} levels")
        self.items_left -= 1
        if self.items_left < 0:
            raise self.fail("too many values")
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        lead = self.data[self.pos : self.pos + 1]
        if lead == b"i":
            return self.integer()
        if lead == b"l":
            self.pos += 1
            items = []
            while self.peek() != b"e":
                items.append(self.value(depth + 1))
            self.pos += 1
            return items
        if lead == b"d":
            self.pos += 1
            result: dict[bytes, Any] = {}
            previous: bytes | None = None
            while self.peek() != b"e":
                key = self.string()
                if previous is not None and key <= previous:
                    raise self.fail("dictionary keys are not sorted and unique")
                previous = key
                result[key] = self.value(depth + 1)
            self.pos += 1
            return result
        if lead.isdigit():
            return self.string()
        raise self.fail(f"unexpected byte {lead!r}")

    def peek(self) -> bytes:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        return self.data[self.pos : self.pos + 1]

    def integer(self) -> int:
        end = self.data.find(b"e", self.pos, self.pos + _MAX_INT_DIGITS + 3)
        if end < 0:
            raise self.fail("unterminated or too long integer")
        text = self.data[self.pos + 1 : end]
        if not text or text in (b"-", b"-0") or (text[0:1] == b"0" and len(text) > 1):
            raise self.fail("malformed integer")
        body = text[1:] if text[0:1] == b"-" else text
        if not body.isdigit() or (body[0:1] == b"0" and text[0:1] == b"-"):
            raise self.fail("malformed integer")
        self.pos = end + 1
        return int(text)

    def string(self) -> bytes:
        colon = self.data.find(b":", self.pos, self.pos + 12)
        if colon < 0:
            raise self.fail("malformed string length")
        length_text = self.data[self.pos : colon]
        if not length_text.isdigit() or (length_text[0:1] == b"0" and len(length_text) > 1):
            raise self.fail("malformed string length")
        length = int(length_text)
        start = colon + 1
        if start + length > len(self.data):
            raise self.fail("string runs past the end of data")
        self.pos = start + length
        return self.data[start : self.pos]


def decode(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """Decode one bencoded value; dictionaries have ``bytes`` keys, strings are ``bytes``."""
    decoder = _Decoder(data, max_depth, max_items)
    value = decoder.value(0)
    if decoder.pos != len(data):
        raise decoder.fail("trailing data after the value")
    return value


def encode(value: Any) -> bytes:
    """Bencode ints, bytes/str, lists and dicts (keys sorted as bytes)."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(encode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(encode(k) + encode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")
