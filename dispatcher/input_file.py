"""Read aria2's input-file format (``aria2c --input-file``) into task items.

One download per non-indented line: its URIs separated by tabs or spaces are mirrors of one
file. Indented ``option=value`` lines below it are that download's options. Blank lines and
lines starting with ``#`` are skipped::

    https://a.example/f.iso	https://b.example/f.iso
      out=f.iso
      split=4
    magnet:?xt=urn:btih:...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class InputEntry:
    """One download and the line it starts on (1-based), for error messages."""

    line: int
    uris: list[str]
    options: dict[str, str] = field(default_factory=dict)

    def as_item(self) -> dict[str, Any]:
        """The `services.task_create_batch` item for this entry."""
        item: dict[str, Any] = {"uris": self.uris}
        if self.options:
            item["options"] = self.options
        return item


class InputFileError(ValueError):
    """The file does not follow the format; `errors` are ``(line, message)`` pairs."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"line {n}: {m}" for n, m in errors))
        self.errors = errors


def parse_input_file(text: str) -> list[InputEntry]:
    """Parse the whole text; raise `InputFileError` listing every malformed line."""
    entries: list[InputEntry] = []
    errors: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            name, sep, value = stripped.partition("=")
            if not entries:
                errors.append((number, "an option line comes before any URI line"))
            elif not sep or not name.strip():
                errors.append((number, f"expected option=value, got {stripped[:80]!r}"))
            else:
                entries[-1].options[name.strip()] = value.strip()
            continue
        entries.append(InputEntry(line=number, uris=stripped.split()))
    if errors:
        raise InputFileError(errors)
    return entries
