"""Build real `.torrent` and Metalink documents for files on disk (tests only).

``make_torrent`` hashes the files into SHA-1 pieces (BitTorrent v1) and can add ``url-list``
web seeds, so aria2c downloads it from a local HTTP server with no tracker and no peers. For a
single file the web seed URL is the file's URL; for several files it is a base URL that aria2
joins with ``<name>/<path>``.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from dispatcher.bencode import encode

PIECE_LENGTH = 16 * 1024


def _pieces(paths: list[Path], piece_length: int) -> bytes:
    hashes = []
    buffer = b""
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(piece_length), b""):
                buffer += block
                while len(buffer) >= piece_length:
                    hashes.append(hashlib.sha1(buffer[:piece_length]).digest())
                    buffer = buffer[piece_length:]
    if buffer:
        hashes.append(hashlib.sha1(buffer).digest())
    return b"".join(hashes)


def make_torrent(
    files: list[Path],
    *,
    name: str | None = None,
    web_seeds: list[str] | None = None,
    trackers: list[str] | None = None,
    piece_length: int = PIECE_LENGTH,
    root: Path | None = None,
) -> bytes:
    """A v1 `.torrent`: one file (named ``name`` or the file's name), or several under ``name``
    with paths relative to ``root``."""
    info: dict[str, Any] = {"piece length": piece_length, "pieces": _pieces(files, piece_length)}
    if len(files) == 1 and root is None:
        info["name"] = name or files[0].name
        info["length"] = files[0].stat().st_size
    else:
        assert name and root is not None, "several files need a name and a root"
        info["name"] = name
        info["files"] = [
            {"length": f.stat().st_size, "path": list(f.relative_to(root).parts)} for f in files
        ]
    meta: dict[str, Any] = {"info": info}
    if web_seeds:
        meta["url-list"] = web_seeds
    if trackers:
        meta["announce"] = trackers[0]
    return encode(meta)


def info_hash(torrent: bytes) -> str:
    """The hex v1 info hash (SHA-1 of the bencoded info dictionary)."""
    from dispatcher.bencode import decode

    return hashlib.sha1(encode(decode(torrent)[b"info"])).hexdigest()


def make_metalink(entries: list[dict[str, Any]], *, version: int = 4) -> bytes:
    """Metalink v4 (RFC 5854) or v3. Each entry: ``name``, ``size``, ``sha256``, ``urls``."""
    if version == 4:
        parts = ['<?xml version="1.0" encoding="UTF-8"?>']
        parts.append('<metalink xmlns="urn:ietf:params:xml:ns:metalink">')
        for entry in entries:
            parts.append(f"<file name={quoteattr(entry['name'])}>")
            parts.append(f"<size>{entry['size']}</size>")
            parts.append(f'<hash type="sha-256">{entry["sha256"]}</hash>')
            parts.extend(f"<url>{escape(url)}</url>" for url in entry["urls"])
            parts.append("</file>")
        parts.append("</metalink>")
    else:
        parts = ['<?xml version="1.0" encoding="UTF-8"?>']
        parts.append('<metalink version="3.0" xmlns="http://www.metalinker.org/"><files>')
        for entry in entries:
            parts.append(f"<file name={quoteattr(entry['name'])}><size>{entry['size']}</size>")
            parts.append(f'<verification><hash type="sha256">{entry["sha256"]}</hash>')
            parts.append("</verification><resources>")
            parts.extend(f'<url type="http">{escape(url)}</url>' for url in entry["urls"])
            parts.append("</resources></file>")
        parts.append("</files></metalink>")
    return "\n".join(parts).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
