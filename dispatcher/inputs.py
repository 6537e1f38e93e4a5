"""Uploaded `.torrent` and Metalink documents: decode safely, check, and describe their files.

Contract: :func:`parse_torrent` and :func:`parse_metalink` take the raw uploaded bytes and return
a :class:`ParsedSource` (display name, total size when known, file list in aria2's index order,
the order ``select-file`` uses), or raise :class:`InvalidUpload` with a message fit for a 400.
Neither touches the database; size limits are the caller's (`dispatcher.validation`).
Bencode is decoded with depth and item limits (`dispatcher.bencode`); XML with ``defusedxml``
(no entities, no external references).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from dataclasses import dataclass, field
from typing import Any

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from dispatcher.bencode import BencodeError, decode

MAX_FILES = 100_000
METALINK_V4 = "urn:ietf:params:xml:ns:metalink"
METALINK_V3 = "http://www.metalinker.org/"


class InvalidUpload(ValueError):
    """The uploaded document is not a usable torrent / Metalink."""


@dataclass(frozen=True)
class ParsedSource:
    name: str
    total_length: int
    files: list[dict[str, Any]] = field(default_factory=list)


def decode_base64(text: Any, field_name: str) -> bytes:
    """Strict base64 (standard alphabet, whitespace tolerated) or :class:`InvalidUpload`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidUpload(f"'{field_name}' must be the file's content as a base64 string")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidUpload(f"'{field_name}' is not valid base64") from None


def _safe_relative(parts: list[str], what: str) -> str:
    if not parts or any(p in {"", ".", ".."} or "/" in p or "\\" in p for p in parts):
        raise InvalidUpload(f"{what} has an unsafe path {'/'.join(parts)!r}")
    if any(ord(c) < 0x20 or c == "\x7f" for p in parts for c in p):
        raise InvalidUpload(f"{what} has a control character in a path")
    return "/".join(parts)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidUpload(f"torrent: {what} must be a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _length(value: Any, what: str) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidUpload(f"torrent: {what} must be a non-negative integer")
    return value


def parse_torrent(data: bytes) -> ParsedSource:
    """Check a `.torrent` (single- or multi-file, v1) and list its files."""
    try:
        meta = decode(data)
    except BencodeError as exc:
        raise InvalidUpload(f"not a valid .torrent (bencode): {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get(b"info"), dict):
        raise InvalidUpload("not a valid .torrent: no 'info' dictionary")
    info = meta[b"info"]
    name = _text(info.get(b"name.utf-8", info.get(b"name")), "info.name")
    _safe_relative([name], "torrent name")
    piece_length = info.get(b"piece length")
    if not isinstance(piece_length, int) or piece_length <= 0:
        raise InvalidUpload("not a valid .torrent: 'piece length' missing or not positive")
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes) or not pieces or len(pieces) % 20:
        raise InvalidUpload("not a valid .torrent: 'pieces' must be SHA-1 hashes (20 bytes each)")
    files: list[dict[str, Any]] = []
    if b"files" in info:
        raw_files = info[b"files"]
        if not isinstance(raw_files, list) or not raw_files or len(raw_files) > MAX_FILES:
            raise InvalidUpload(f"torrent: 'files' must list 1 to {MAX_FILES} files")
        for index, item in enumerate(raw_files, start=1):
            if not isinstance(item, dict):
                raise InvalidUpload("torrent: each entry of 'files' must be a dictionary")
            raw_path = item.get(b"path.utf-8", item.get(b"path"))
            if not isinstance(raw_path, list):
                raise InvalidUpload("torrent: a file has no 'path' list")
            path = _safe_relative([_text(p, "file path") for p in raw_path], "torrent file")
            size = _length(item.get(b"length"), "file length")
            files.append({"index": index, "path": f"{name}/{path}", "size": size, "selected": True})
    else:
        size = _length(info.get(b"length"), "info.length")
        files.append({"index": 1, "path": name, "size": size, "selected": True})
    total = sum(int(f["size"]) for f in files)
    if len(pieces) // 20 != -(-total // piece_length):
        raise InvalidUpload("not a valid .torrent: the piece count does not match the file sizes")
    return ParsedSource(name=name, total_length=total, files=files)


def _children(element: Any, tag: str, namespace: str) -> list[Any]:
    return list(element.findall(f"{{{namespace}}}{tag}" if namespace else tag))


def parse_metalink(data: bytes) -> ParsedSource:
    """Check a Metalink v4 (RFC 5854) or v3 document and list its files."""
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidUpload(f"Metalink refused: {type(exc).__name__}") from None
    except ElementTree.ParseError as exc:
        raise InvalidUpload(f"not a valid Metalink (XML): {exc}") from None
    if root.tag == f"{{{METALINK_V4}}}metalink":
        namespace, file_parent = METALINK_V4, root
    elif root.tag == f"{{{METALINK_V3}}}metalink":
        namespace = METALINK_V3
        (file_parent, *_) = _children(root, "files", namespace) or [None]
        if file_parent is None:
            raise InvalidUpload("Metalink v3 has no <files> element")
    else:
        raise InvalidUpload("not a Metalink: the root must be <metalink> (v3 or v4 namespace)")
    elements = _children(file_parent, "file", namespace)
    if not elements or len(elements) > MAX_FILES:
        raise InvalidUpload(f"Metalink must describe 1 to {MAX_FILES} files")
    files: list[dict[str, Any]] = []
    for index, element in enumerate(elements, start=1):
        name = (element.get("name") or "").strip()
        path = _safe_relative(name.split("/") if name else [], "Metalink file")
        if posixpath.isabs(name):
            raise InvalidUpload(f"Metalink file {name!r} has an absolute path")
        sizes = _children(element, "size", namespace)
        size = 0
        if sizes:
            text = (sizes[0].text or "").strip()
            if not text.isdigit():
                raise InvalidUpload(f"Metalink file {name!r}: <size> is not a number")
            size = int(text)
        urls = element.iter(f"{{{namespace}}}url")
        if not any((u.text or "").strip() for u in urls) and not list(
            element.iter(f"{{{namespace}}}metaurl")
        ):
            raise InvalidUpload(f"Metalink file {name!r} has no <url>")
        files.append({"index": index, "path": path, "size": size, "selected": True})
    name = files[0]["path"] if len(files) == 1 else f"{files[0]['path']} (+{len(files) - 1})"
    return ParsedSource(
        name=str(name)[:255], total_length=sum(int(f["size"]) for f in files), files=files
    )
