"""Formatting filters for the dashboard templates."""

from __future__ import annotations

from typing import Any

from django import template

from dispatcher.models import Priority
from dispatcher.redaction import redact_uri

register = template.Library()

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@register.filter
def human_bytes(value: Any) -> str:
    """1536 -> '1.5 KiB'; 0 or unknown -> '—'."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "—"
    if size <= 0:
        return "—"
    unit = 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.0f} {_UNITS[unit]}" if unit == 0 else f"{size:.1f} {_UNITS[unit]}"


@register.filter
def human_speed(value: Any) -> str:
    """2097152 -> '2.0 MiB/s'; nothing moving -> '0 B/s'."""
    text = human_bytes(value)
    return "0 B/s" if text == "—" else f"{text}/s"


@register.filter
def human_duration(seconds: Any) -> str:
    """3725 -> '1h 2m'; None -> '—'."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


@register.filter
def redact(uri: Any) -> str:
    return redact_uri(str(uri))


@register.filter
def priority_label(value: Any) -> str:
    try:
        return str(Priority(int(value)).label)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def ratio(uploaded: Any, downloaded: Any) -> str:
    """Share ratio as aria2 shows it: 1536, 1024 -> '1.50'."""
    try:
        down = float(downloaded)
        return f"{float(uploaded) / down:.2f}" if down > 0 else "—"
    except (TypeError, ValueError):
        return "—"
