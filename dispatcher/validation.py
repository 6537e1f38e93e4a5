"""Validation of what users submit: URIs, per-task aria2 options, priority, tags.

The option allowlist is the agent's own (`worker_agent.options`), so the dispatcher and the agent
check the very same rules. Errors are a dict of field → messages, raised as Django's
`ValidationError`, which the API renders as a 400 and the admin and commands print.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ValidationError

from dispatcher.models import Priority, TaskKind
from worker_agent.options import OptionError, validate_task_options

ALLOWED_SCHEMES = ("http", "https", "ftp", "sftp")
MAX_URIS = 16
MAX_URI_LENGTH = 4096
MAX_TAGS = 20
TAG_RE = re.compile(r"^[A-Za-z0-9_.:=/-]{1,64}$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
PRIORITY_NAMES = {p.label: p.value for p in Priority}


@dataclass(frozen=True)
class TaskInput:
    kind: str
    uris: list[str]
    options: dict[str, Any]
    priority: int
    tags: list[str]
    name: str


def _check_uri(uri: Any) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("must be a non-empty string")
    uri = uri.strip()
    if len(uri) > MAX_URI_LENGTH:
        raise ValueError(f"longer than {MAX_URI_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(uri):
        raise ValueError("contains whitespace or a control character")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "magnet":
        if "xt" not in parse_qs(parts.query):
            raise ValueError("magnet link has no 'xt' (exact topic) parameter")
        return uri
    if scheme not in ALLOWED_SCHEMES:
        allowed = ", ".join((*ALLOWED_SCHEMES, "magnet"))
        raise ValueError(f"scheme '{scheme or '(none)'}' is not allowed (allowed: {allowed})")
    if not parts.hostname:
        raise ValueError("has no host")
    return uri


def _name_from(uris: list[str], options: dict[str, Any]) -> str:
    if options.get("out"):
        return str(options["out"])
    first = urlsplit(uris[0])
    if first.scheme.lower() == "magnet":
        names = parse_qs(first.query).get("dn")
        return names[0][:255] if names else "magnet"
    base = posixpath.basename(unquote(first.path)) or (first.hostname or "download")
    return base[:255]


def _normalise_options(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError({"options": ["must be an object of aria2 option names to values"]})
    # Numbers are accepted for convenience and stored as the strings aria2 needs.
    converted: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            converted[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            converted[key] = str(value)
        else:
            converted[key] = value
    try:
        return dict(validate_task_options(converted))
    except OptionError as exc:
        raise ValidationError({"options": [str(exc)]}) from None


def parse_priority(value: Any) -> int:
    """1–4 (the original's scale) or low/normal/high/urgent."""
    if value is None or value == "":
        return Priority.NORMAL
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4:
        return value
    if isinstance(value, str) and value.strip().isdigit() and 1 <= int(value) <= 4:
        return int(value)
    raise ValidationError({"priority": ["must be 1-4 or one of low, normal, high, urgent"]})


def validate_task_input(
    *,
    url: Any = None,
    uris: Any = None,
    options: Any = None,
    priority: Any = None,
    tags: Any = None,
    name: Any = None,
) -> TaskInput:
    """Check one task's fields; raise `ValidationError` with every field's problems."""
    errors: dict[str, list[str]] = {}
    given: list[Any] = []
    if url not in (None, ""):
        given.append(url)
    if uris not in (None, []):
        if not isinstance(uris, list):
            errors["uris"] = ["must be a list of URLs (mirrors of one file)"]
        else:
            given.extend(uris)
    clean: list[str] = []
    if not given and "uris" not in errors:
        errors["url"] = ["give 'url' or 'uris' (one or more mirrors of one file)"]
    for index, uri in enumerate(given):
        try:
            checked = _check_uri(uri)
        except ValueError as exc:
            field = "url" if url not in (None, "") and index == 0 else "uris"
            errors.setdefault(field, []).append(f"{str(uri)[:100]!r}: {exc}")
            continue
        if checked not in clean:
            clean.append(checked)
    if len(clean) > MAX_URIS:
        errors.setdefault("uris", []).append(f"at most {MAX_URIS} mirrors per task")
    magnets = [u for u in clean if u.lower().startswith("magnet:")]
    if magnets and len(clean) > 1:
        errors.setdefault("uris", []).append("a magnet link cannot be mixed with other URIs")

    clean_options: dict[str, Any] = {}
    try:
        clean_options = _normalise_options(options)
    except ValidationError as exc:
        errors.update(exc.message_dict)

    clean_priority = 2
    try:
        clean_priority = parse_priority(priority)
    except ValidationError as exc:
        errors.update(exc.message_dict)

    clean_tags: list[str] = []
    if tags not in (None, ""):
        if isinstance(tags, str):
            tags = [t for t in re.split(r"[,\s]+", tags) if t]
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            errors["tags"] = [f"must be a list of at most {MAX_TAGS} tags"]
        else:
            for tag in tags:
                if not isinstance(tag, str) or not TAG_RE.match(tag):
                    errors.setdefault("tags", []).append(
                        f"{str(tag)[:70]!r}: use 1-64 letters, digits or _ . : = / -"
                    )
                elif tag not in clean_tags:
                    clean_tags.append(tag)

    if name not in (None, "") and (
        not isinstance(name, str)
        or len(name) > 255
        or _CONTROL_OR_SPACE.sub("", name.replace(" ", "")) != name.replace(" ", "")
    ):
        errors["name"] = ["must be text of at most 255 characters without control characters"]

    if errors:
        raise ValidationError(errors)
    kind = TaskKind.MAGNET if magnets else TaskKind.URI
    return TaskInput(
        kind=kind,
        uris=clean,
        options=clean_options,
        priority=clean_priority,
        tags=clean_tags,
        name=str(name) if name else _name_from(clean, clean_options),
    )
