"""The overview page: counts, cluster speed, throughput chart, recent failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dispatcher import services
from dispatcher.models import SpeedSample, Task, TaskStatus
from dispatcher.tests.dashboard_fixtures import HTMX, member, member_client, staff, staff_client
from dispatcher.throughput import SAMPLE_SECONDS, speed_sample_record, throughput_chart

__all__ = ["member", "member_client", "staff", "staff_client"]

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_login_page_logs_a_user_in_and_goes_to_the_overview(
    client: Client, staff: User
) -> None:
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "staff", "password": "pw-staff-1234"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_overview_shows_counts_speed_and_recent_failures(staff_client: Client) -> None:
    services.task_create(url="http://e.x/a.iso")
    failed = services.task_create(url="http://e.x/b.iso")
    Task.objects.filter(pk=failed.pk).update(
        status=TaskStatus.FAILED, error_message="404 Not Found", finished_at=timezone.now()
    )
    Task.objects.create(
        uris=["http://e.x/c"], status=TaskStatus.DOWNLOADING, download_speed=2 * 1024 * 1024
    )
    response = staff_client.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "404 Not Found" in body
    assert "2.0 MiB/s" in body
    assert '<svg viewBox="0 0 600 120"' in body
    assert response.context["task_counts"]["failed"] == 1
    assert response.context["task_counts"]["pending"] == 1


def test_an_htmx_request_gets_only_the_live_region(staff_client: Client) -> None:
    response = staff_client.get("/", **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="overview-live"')
    assert "<html" not in body


def test_a_member_sees_counts_of_their_own_tasks_only(member_client: Client, member: User) -> None:
    services.task_create(url="http://e.x/theirs.iso")
    services.task_create(url="http://e.x/mine.iso", owner=member)
    response = member_client.get("/")
    assert response.context["task_counts"]["pending"] == 1


def test_one_speed_sample_is_stored_per_interval_even_when_two_passes_run() -> None:
    now = timezone.now()
    assert speed_sample_record(now=now) is True
    assert speed_sample_record(now=now) is False
    assert SpeedSample.objects.count() == 1


def test_samples_older_than_the_window_are_pruned() -> None:
    now = timezone.now()
    speed_sample_record(now=now - timedelta(minutes=30))
    speed_sample_record(now=now)
    assert SpeedSample.objects.count() == 1


def test_the_chart_scales_to_the_peak_and_reports_the_latest_speed() -> None:
    now = timezone.now()
    Task.objects.create(uris=["http://e.x/c"], status=TaskStatus.DOWNLOADING, download_speed=500)
    speed_sample_record(now=now - timedelta(seconds=SAMPLE_SECONDS))
    Task.objects.update(download_speed=1000)
    speed_sample_record(now=now)
    chart = throughput_chart(now=now)
    assert (chart.peak, chart.latest, chart.samples) == (1000, 1000, 2)
    last_point = chart.points.split()[-1]
    assert last_point == "600.0,2.0"
