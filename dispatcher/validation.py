"""Validation of what users submit: URIs, uploads, per-task aria2 options, priority, tags.

The option allowlist is the agent's own (`worker_agent.options`), so the dispatcher and the agent
check the very same rules. Errors are a dict of field → messages, raised as Django's
`ValidationError`, which the API renders as a 400 and the admin and commands print.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from dispatcher.inputs import InvalidUpload, decode_base64, parse_metalink, parse_torrent
from dispatcher.models import Priority, TaskKind
from worker_agent.options import OptionError, validate_task_options
from worker_agent.urlpolicy import UrlDenied

MAX_URIS = 16
MAX_URI_LENGTH = 4096
MAX_TAGS = 20
TAG_RE = re.compile(r"^[A-Za-z0-9_.:=/-]{1,64}$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
PRIORITY_NAMES = {p.label: p.value for p in Priority}
# A URL whose path ends like this is a document aria2 follows (parent GID, then children).
URL_SUFFIX_KINDS = {".torrent": TaskKind.TORRENT, ".meta4": TaskKind.METALINK}
URL_SUFFIX_KINDS[".metalink"] = TaskKind.METALINK
TASK_FIELDS = frozenset(
    {"url", "uris", "options", "priority", "tags", "name", "torrent", "metalink"}
    | {"pause_for_selection"}
)


class UploadTooLarge(Exception):
    """An uploaded `.torrent`/Metalink is over `security.max_upload_bytes` (HTTP 413)."""


@dataclass(frozen=True)
class TaskInput:
    kind: str
    uris: list[str]
    options: dict[str, Any]
    priority: int
    tags: list[str]
    name: str
    upload: bytes | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    total_length: int = 0
    pause_for_selection: bool = False


def _check_uri(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be a non-empty string")
    uri: str = raw.strip()
    if len(uri) > MAX_URI_LENGTH:
        raise ValueError(f"longer than {MAX_URI_LENGTH} characters")
    if _CONTROL_OR_SPACE.search(uri):
        raise ValueError("contains whitespace or a control character")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() == "magnet" and "xt" not in parse_qs(parts.query):
        raise ValueError("magnet link has no 'xt' (exact topic) parameter")
    try:
        settings.ARIACLUSTER.security.url_policy.check_uri(uri)
    except UrlDenied as exc:
        raise ValueError(f"denied by the URL policy: {exc.reason}") from None
    return uri


def uri_kind(uri: str) -> str:
    """The task kind a URI implies: magnet, a `.torrent` / Metalink URL, or plain."""
    parts = urlsplit(uri)
    if parts.scheme.lower() == "magnet":
        return TaskKind.MAGNET
    path = unquote(parts.path).lower()
    for suffix, kind in URL_SUFFIX_KINDS.items():
        if path.endswith(suffix):
            return kind
    return TaskKind.URI


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
        clean = _bound_seeding(dict(validate_task_options(converted)))
        _check_trackers(clean)
    except OptionError as exc:
        raise ValidationError({"options": [str(exc)]}) from None
    return clean


def _check_trackers(options: dict[str, Any]) -> None:
    """`bt-tracker` URLs go through the URL policy like the download URLs."""
    policy = settings.ARIACLUSTER.security.url_policy
    for tracker in str(options.get("bt-tracker", "")).split(","):
        if tracker:
            try:
                policy.check_tracker(tracker)
            except UrlDenied as exc:
                raise OptionError("bt-tracker", f"{tracker!r}: {exc.reason}") from None


def _bound_seeding(options: dict[str, Any]) -> dict[str, Any]:
    """Keep seeding within `task_assignment.max_seed_time` / `max_seed_ratio`.

    Seeding is off unless asked (the agent starts aria2c with seed-time=0). A task asking only
    for a ratio gets the time bound too, so it can never seed forever (ratio 0 = unlimited).
    """
    bounds = settings.ARIACLUSTER.task_assignment
    if "seed-time" in options and float(options["seed-time"]) > bounds.max_seed_time:
        raise OptionError(
            "seed-time", f"at most {bounds.max_seed_time:g} minutes (task_assignment.max_seed_time)"
        )
    if "seed-ratio" in options:
        ratio = float(options["seed-ratio"])
        if ratio == 0 or ratio > bounds.max_seed_ratio:
            raise OptionError(
                "seed-ratio",
                f"must be above 0 and at most {bounds.max_seed_ratio:g} "
                "(task_assignment.max_seed_ratio)",
            )
        options.setdefault("seed-time", f"{bounds.max_seed_time:g}")
    return options


def validate_options(raw: Any) -> dict[str, Any]:
    """Per-task options alone (e.g. a change on a running task); raises `ValidationError`."""
    return _normalise_options(raw)


def _decode_upload(value: Any, field_name: str) -> bytes:
    """Raw bytes of an upload given as base64 text (JSON) or bytes (multipart)."""
    data = value if isinstance(value, bytes) else decode_base64(value, field_name)
    limit = settings.ARIACLUSTER.security.max_upload_bytes
    if len(data) > limit:
        raise UploadTooLarge(
            f"'{field_name}' is {len(data)} bytes; the limit is {limit} (security.max_upload_bytes)"
        )
    if not data:
        raise InvalidUpload(f"'{field_name}' is empty")
    return data


def _parse_upload(torrent: Any, metalink: Any) -> tuple[str, bytes, Any] | None:
    """(kind, bytes, ParsedSource) of the uploaded document, None without one.

    Raises `UploadTooLarge` or `ValidationError` naming the field.
    """
    given = [
        (n, v) for n, v in (("torrent", torrent), ("metalink", metalink)) if v not in (None, "")
    ]
    if not given:
        return None
    if len(given) > 1:
        raise ValidationError({"torrent": ["give either 'torrent' or 'metalink', not both"]})
    field_name, value = given[0]
    try:
        data = _decode_upload(value, field_name)
        parsed = parse_torrent(data) if field_name == "torrent" else parse_metalink(data)
    except InvalidUpload as exc:
        raise ValidationError({field_name: [str(exc)]}) from None
    kind = TaskKind.TORRENT if field_name == "torrent" else TaskKind.METALINK
    return kind, data, parsed


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value in (None, "", 0) or (
        isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off"}
    ):
        return False
    raise ValidationError({"pause_for_selection": ["must be true or false"]})


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
    torrent: Any = None,
    metalink: Any = None,
    pause_for_selection: Any = None,
) -> TaskInput:
    """Check one task's fields; raise `ValidationError` with every field's problems.

    A task is one of: URIs (mirrors of one file, a magnet, or one `.torrent` / Metalink URL
    with its mirrors), an uploaded `torrent` (URIs are then its web seeds) or an uploaded
    `metalink`. An upload over `security.max_upload_bytes` raises `UploadTooLarge`.
    """
    errors: dict[str, list[str]] = {}
    upload = _parse_upload(torrent, metalink)
    given: list[Any] = []
    if url not in (None, ""):
        given.append(url)
    if uris not in (None, []):
        if not isinstance(uris, list):
            errors["uris"] = ["must be a list of URLs (mirrors of one file)"]
        else:
            given.extend(uris)
    clean: list[str] = []
    if not given and "uris" not in errors and upload is None:
        errors["url"] = [
            "give 'url' or 'uris' (one or more mirrors of one file), 'torrent' or 'metalink'"
        ]
    if upload is not None and upload[0] == TaskKind.METALINK and given:
        errors["uris"] = ["a Metalink lists its own URLs; do not add 'url'/'uris'"]
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
    kinds = {uri_kind(u) for u in clean}
    if TaskKind.MAGNET in kinds and len(clean) > 1:
        errors.setdefault("uris", []).append("a magnet link cannot be mixed with other URIs")
    elif len(kinds) > 1:
        errors.setdefault("uris", []).append(
            "mirrors must all be the same kind of document (plain file, .torrent or Metalink)"
        )
    if upload is not None and kinds - {TaskKind.URI}:
        errors.setdefault("uris", []).append(
            "with an uploaded torrent, 'uris' are web seeds: plain http(s)/ftp URLs only"
        )
    try:
        hold = _flag(pause_for_selection)
    except ValidationError as exc:
        errors.update(exc.message_dict)
        hold = False

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
    if upload is not None:
        kind, data, parsed = upload
        return TaskInput(
            kind=kind,
            uris=clean,
            options=clean_options,
            priority=clean_priority,
            tags=clean_tags,
            name=str(name) if name else parsed.name,
            upload=data,
            files=[{**f, "completed": 0} for f in parsed.files],
            total_length=parsed.total_length,
            pause_for_selection=hold,
        )
    (kind,) = kinds
    return TaskInput(
        kind=kind,
        uris=clean,
        options=clean_options,
        priority=clean_priority,
        tags=clean_tags,
        name=str(name) if name else _name_from(clean, clean_options),
        pause_for_selection=hold,
    )
