"""Cluster throughput history: sampled by the maintenance pass, drawn by the dashboard.

Samples live in the database (`SpeedSample`), not in process memory, so every dispatcher process
draws the same chart and any of them may take a sample: the unique bucket makes the first insert
of each interval win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Sum
from django.utils import timezone

from dispatcher.models import SpeedSample, Task, TaskStatus

SAMPLE_SECONDS = 2
WINDOW_SECONDS = 600


def _bucket(now: datetime) -> int:
    return int(now.timestamp()) // SAMPLE_SECONDS


def cluster_speed() -> tuple[int, int]:
    """(download, upload) bytes/s summed over downloading tasks."""
    sums = Task.objects.filter(status=TaskStatus.DOWNLOADING).aggregate(
        d=Sum("download_speed"), u=Sum("upload_speed")
    )
    return int(sums["d"] or 0), int(sums["u"] or 0)


def speed_sample_record(*, now: datetime | None = None) -> bool:
    """Store the cluster speed for the current interval unless a process already did.

    Returns True when this call stored the sample. Also prunes samples older than the window.
    """
    now = now or timezone.now()
    bucket = _bucket(now)
    if SpeedSample.objects.filter(bucket=bucket).exists():
        return False
    download, upload = cluster_speed()
    created = SpeedSample.objects.bulk_create(
        [SpeedSample(bucket=bucket, at=now, download_speed=download, upload_speed=upload)],
        ignore_conflicts=True,
    )
    SpeedSample.objects.filter(bucket__lt=bucket - WINDOW_SECONDS // SAMPLE_SECONDS).delete()
    return bool(created)


@dataclass(frozen=True)
class Chart:
    """An SVG line chart's geometry, ready for the template (no client-side drawing)."""

    width: int
    height: int
    points: str
    area: str
    peak: int
    latest: int
    samples: int


def throughput_chart(*, now: datetime | None = None, width: int = 600, height: int = 120) -> Chart:
    """The last `WINDOW_SECONDS` of download speed as polyline points (missing intervals = 0)."""
    now = now or timezone.now()
    last = _bucket(now)
    count = WINDOW_SECONDS // SAMPLE_SECONDS
    first = last - count + 1
    speeds = dict(
        SpeedSample.objects.filter(bucket__gte=first, bucket__lte=last).values_list(
            "bucket", "download_speed"
        )
    )
    values = [speeds.get(b, 0) for b in range(first, last + 1)]
    peak = max(values) if values else 0
    scale = (height - 4) / peak if peak else 0.0
    step = width / (count - 1)
    coords = [f"{i * step:.1f},{height - 2 - v * scale:.1f}" for i, v in enumerate(values)]
    points = " ".join(coords)
    area = f"0,{height} {points} {width},{height}"
    # The current interval may not be sampled yet: fall back to the previous one.
    latest = speeds.get(last, speeds.get(last - 1, 0))
    return Chart(
        width=width,
        height=height,
        points=points,
        area=area,
        peak=peak,
        latest=latest,
        samples=len(speeds),
    )
