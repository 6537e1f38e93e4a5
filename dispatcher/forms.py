"""Dashboard forms: "Add downloads" (aria2 input-file style lines, .torrent / Metalink uploads,
options) and a task's live speed limits and file selection, all checked by the API's rules.

Every message comes from `dispatcher.validation` / `worker_agent.options`, the same code the REST
API uses, so the dashboard and the API say the same thing about the same input.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile

from dispatcher.models import Priority, TaskKind
from dispatcher.validation import UploadTooLarge, uri_kind, validate_options, validate_task_input

MAX_LINES = 1000
UPLOAD_FIELDS = ("torrent", "metalink")

# Form field name -> aria2 option name, for the options offered as their own fields.
OPTION_FIELDS = {
    "split": "split",
    "max_connection_per_server": "max-connection-per-server",
    "max_download_limit": "max-download-limit",
    "checksum": "checksum",
    "out": "out",
    "seed_time": "seed-time",
    "seed_ratio": "seed-ratio",
}
# Item fields of an uploaded document's task -> the form field its errors belong to.
UPLOAD_ERROR_FIELDS = {"uris": "web_seeds", "url": "web_seeds", "torrent": "torrent"}
UPLOAD_ERROR_FIELDS["metalink"] = "metalink"
UPLOAD_ERROR_FIELDS["pause_for_selection"] = "pause_for_selection"


def parse_download_lines(text: str) -> list[tuple[int, list[str]]]:
    """(line number, URIs) per non-empty line; several URIs on a line are mirrors of one file.

    As in aria2's input files: blank lines and lines starting with '#' are skipped.
    """
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append((number, stripped.split()))
    return lines


def _has_files(uris: list[str]) -> bool:
    """Whether a line is a magnet / .torrent / Metalink URL, i.e. has a file list to choose."""
    try:
        return any(uri_kind(u) != TaskKind.URI for u in uris)
    except ValueError:
        return False


class AddDownloadsForm(forms.Form):
    uris = forms.CharField(
        required=False,
        label="URLs or magnet links",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One download per line. Several mirrors of one file go on one line, "
        "separated by spaces.",
    )
    torrent = forms.FileField(
        required=False,
        allow_empty_file=True,  # refused below with the API's message
        label=".torrent file",
        widget=forms.ClearableFileInput(attrs={"accept": ".torrent,application/x-bittorrent"}),
        help_text="Downloaded with BitTorrent as one more task.",
    )
    web_seeds = forms.CharField(
        required=False,
        label="Web seeds for the torrent",
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "autocomplete": "off"}),
        help_text="Optional http(s)/ftp URLs serving the torrent's data, separated by spaces "
        "or lines.",
    )
    metalink = forms.FileField(
        required=False,
        allow_empty_file=True,
        label="Metalink file",
        widget=forms.ClearableFileInput(
            attrs={"accept": ".metalink,.meta4,application/metalink4+xml,application/metalink+xml"}
        ),
        help_text="A .meta4 or .metalink document: its own URLs and checksums, one more task.",
    )
    pause_for_selection = forms.BooleanField(
        required=False,
        label="Let me choose the files first",
        help_text="Torrents, magnets and Metalinks wait on their task page until you pick "
        "which files to download.",
    )
    priority = forms.ChoiceField(
        choices=[(str(p.value), p.label) for p in Priority], initial=str(Priority.NORMAL.value)
    )
    tags = forms.CharField(
        required=False, help_text="Comma or space separated, e.g. site=home video."
    )
    split = forms.CharField(required=False, label="split", help_text="Connections per file.")
    max_connection_per_server = forms.CharField(required=False, label="max-connection-per-server")
    max_download_limit = forms.CharField(
        required=False, label="max-download-limit", help_text="Per download, e.g. 2M."
    )
    checksum = forms.CharField(required=False, help_text="e.g. sha-256=<hex digest>.")
    out = forms.CharField(required=False, label="out", help_text="File name (single line only).")
    seed_time = forms.CharField(
        required=False, label="seed-time", help_text="BitTorrent: minutes to seed after."
    )
    seed_ratio = forms.CharField(
        required=False, label="seed-ratio", help_text="BitTorrent: stop seeding at this ratio."
    )
    header = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text="HTTP headers, one 'Name: value' per line.",
    )
    more_options = forms.CharField(
        required=False,
        label="Other aria2 options",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One name=value per line, e.g. seed-time=0.",
    )

    @property
    def had_uploads(self) -> bool:
        """Whether files came with the post (a re-rendered form cannot keep them)."""
        return any(self.files.get(field) for field in UPLOAD_FIELDS)

    def _options(self) -> dict[str, Any]:
        """The options of every field, each checked on its own so errors land next to it."""
        options: dict[str, Any] = {}
        for field, option in OPTION_FIELDS.items():
            value = (self.cleaned_data.get(field) or "").strip()
            if value:
                self._check_option(field, {option: value}, options)
        headers = [h.strip() for h in (self.cleaned_data.get("header") or "").splitlines()]
        if any(headers):
            self._check_option("header", {"header": [h for h in headers if h]}, options)
        for number, line in enumerate(
            (self.cleaned_data.get("more_options") or "").splitlines(), start=1
        ):
            if not line.strip():
                continue
            name, sep, value = line.strip().partition("=")
            name = name.strip()
            if not sep or not name:
                self.add_error("more_options", f"line {number}: expected name=value")
            elif name in options:
                self.add_error("more_options", f"line {number}: option {name!r} given twice")
            else:
                self._check_option("more_options", {name: value.strip()}, options)
        return options

    def _check_option(self, field: str, option: dict[str, Any], into: dict[str, Any]) -> None:
        """The API's own check of one option (allowlist, value, seeding bounds)."""
        try:
            checked = validate_options(option)
        except ValidationError as exc:
            for message in exc.messages:
                self.add_error(field, message)
        else:
            # Only the option itself: defaults the check adds are added again per task.
            into.update({name: value for name, value in checked.items() if name in option})

    def _upload(self, field: str) -> bytes | None:
        """The uploaded document's bytes, refused over the API's size limit with its message."""
        upload: UploadedFile | None = self.cleaned_data.get(field)
        if not upload:
            return None
        limit = settings.ARIACLUSTER.security.max_upload_bytes
        if upload.size is not None and upload.size > limit:
            self.add_error(
                field,
                f"'{field}' is {upload.size} bytes; the limit is {limit} "
                "(security.max_upload_bytes)",
            )
            return None
        content: bytes = upload.read()
        return content

    def _upload_items(self, data: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        """One task per uploaded document, checked by the API's rules, errors on its fields."""
        items: list[dict[str, Any]] = []
        seeds = (data.get("web_seeds") or "").split()
        for field in UPLOAD_FIELDS:
            content = self._upload(field)
            if content is None:
                continue
            item: dict[str, Any] = {
                field: content,
                "options": options,
                "priority": data.get("priority"),
                "tags": data.get("tags") or None,
                "pause_for_selection": bool(data.get("pause_for_selection")),
            }
            if field == "torrent" and seeds:
                item["uris"] = seeds
            try:
                validate_task_input(**item)
            except UploadTooLarge as exc:
                self.add_error(field, str(exc))
            except ValidationError as exc:
                for name, messages in exc.message_dict.items():
                    target = UPLOAD_ERROR_FIELDS.get(name)
                    if target is None and name in self.errors:
                        continue  # a shared field, reported by the URL lines' check too
                    for message in messages:
                        self.add_error(target if target in self.fields else None, message)
            items.append(item)
        if seeds and not self.cleaned_data.get("torrent") and "web_seeds" not in self.errors:
            self.add_error("web_seeds", "web seeds go with an uploaded .torrent file")
        return items

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        options = self._options()
        lines = parse_download_lines(data.get("uris") or "")
        uploads = [f for f in UPLOAD_FIELDS if data.get(f)]
        if "uris" in data and not lines and not uploads:
            self.add_error("uris", "give at least one URL or magnet link, or upload a file")
        if len(lines) > MAX_LINES:
            self.add_error("uris", f"at most {MAX_LINES} lines at once")
        if options.get("out") and len(lines) + len(uploads) > 1:
            self.add_error("out", "out names one file; use it with a single line")
        items: list[dict[str, Any]] = []
        shared_errors: dict[str, set[str]] = {}
        # With no line at all, still check the shared fields (line 0 carries no URI errors).
        for number, uris in lines or [(0, [])]:
            item = {
                "uris": uris,
                "options": options,
                "priority": data.get("priority"),
                "tags": data.get("tags") or None,
                # Only downloads with a file list can wait for a choice (a plain URL would not
                # have anything to choose and would wait for ever).
                "pause_for_selection": bool(data.get("pause_for_selection")) and _has_files(uris),
            }
            try:
                validate_task_input(**item)
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    for message in messages:
                        if field in ("url", "uris"):
                            if number:
                                self.add_error("uris", f"line {number}: {message}")
                        elif field not in self.errors:
                            shared_errors.setdefault(field, set()).add(message)
            if number:
                items.append(item)
        for field, problems in shared_errors.items():
            target = field if field in self.fields else None
            for message in sorted(problems):
                self.add_error(target, message)
        items.extend(self._upload_items(data, options))
        data["items"] = items
        return data


# Task detail: live speed limits and file selection -------------------------------------------

LIMIT_FIELDS = {"max_download_limit": "max-download-limit", "max_upload_limit": "max-upload-limit"}
MAX_SELECT_INDEX = 100_000
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class TaskLimitsForm(forms.Form):
    """Speed limits of a running task; each field checked by the API's option rules."""

    max_download_limit = forms.CharField(
        required=False,
        label="Download limit",
        help_text="Bytes per second, e.g. 500K or 2M; empty for none.",
    )
    max_upload_limit = forms.CharField(
        required=False,
        label="Upload limit",
        help_text="BitTorrent upload, e.g. 100K; empty for none.",
    )

    def __init__(self, *args: Any, current: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.current = dict(current or {})
        kwargs["initial"] = {
            field: self.current.get(option, "") for field, option in LIMIT_FIELDS.items()
        }
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        for field, option in LIMIT_FIELDS.items():
            value = (data.get(field) or "").strip()
            if not value:
                continue
            try:
                validate_options({option: value})
            except ValidationError as exc:
                for message in exc.messages:
                    self.add_error(field, message)
        return data

    def changes(self) -> dict[str, Any]:
        """The options to send to `task_change_options`: new values, None to remove a limit."""
        changes: dict[str, Any] = {}
        for field, option in LIMIT_FIELDS.items():
            value = (self.cleaned_data.get(field) or "").strip()
            if value and value != self.current.get(option):
                changes[option] = value
            elif not value and option in self.current:
                changes[option] = None
        return changes


def parse_file_indexes(text: str) -> list[int]:
    """aria2's `select-file` syntax ('1,3-5') as a list of indexes; `ValidationError` if bad."""
    indexes: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        match = _RANGE.match(part)
        if not match:
            raise ValidationError(f"{part[:20]!r}: use indexes like 1,3-5")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if low < 1 or high < low or high > MAX_SELECT_INDEX:
            raise ValidationError(f"{part[:20]!r}: use indexes from 1 to {MAX_SELECT_INDEX}")
        indexes.update(range(low, high + 1))
        if len(indexes) > MAX_SELECT_INDEX:
            raise ValidationError(f"at most {MAX_SELECT_INDEX} files")
    return sorted(indexes)
