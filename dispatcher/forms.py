"""The "Add downloads" form: aria2 input-file style lines plus options, checked by the API's rules.

Every message comes from `dispatcher.validation` / `worker_agent.options`, the same code the REST
API uses, so the dashboard and the API say the same thing about the same input.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from dispatcher.models import Priority
from dispatcher.validation import validate_task_input
from worker_agent.options import OptionError, validate_task_options

MAX_LINES = 1000

# Form field name -> aria2 option name, for the options offered as their own fields.
OPTION_FIELDS = {
    "split": "split",
    "max_connection_per_server": "max-connection-per-server",
    "max_download_limit": "max-download-limit",
    "checksum": "checksum",
    "out": "out",
}


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


class AddDownloadsForm(forms.Form):
    uris = forms.CharField(
        label="URLs or magnet links",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One download per line. Several mirrors of one file go on one line, "
        "separated by spaces.",
    )
    # Hook for the inputs work: `.torrent` and `.metalink` uploads become FileFields here and
    # extra items in `clean()` (kind torrent/metalink); the view already posts multipart.
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
        try:
            into.update(validate_task_options(option))
        except OptionError as exc:
            self.add_error(field, str(exc))

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        options = self._options()
        lines = parse_download_lines(data.get("uris") or "")
        if "uris" in data and not lines:
            self.add_error("uris", "give at least one URL or magnet link")
        if len(lines) > MAX_LINES:
            self.add_error("uris", f"at most {MAX_LINES} lines at once")
        if options.get("out") and len(lines) > 1:
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
        data["items"] = items
        return data
