"""Security of the user API: the URL policy at submit, who sees what, rate limits, queue cap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from dispatcher import services
from dispatcher.keys import api_key_create
from dispatcher.models import Task
from worker_agent.tests.test_urlpolicy import SSRF_CORPUS
from worker_agent.urlpolicy import URL_DENIED_ERROR_CODE, UrlPolicy
from workers_app.services import Registration

pytestmark = pytest.mark.django_db

STRICT = UrlPolicy(allow_loopback=False, allow_private=False)


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def user_client(username: str, *, staff: bool = False, scope: str = "write") -> APIClient:
    user = User.objects.create_user(username, is_staff=staff)
    _, plaintext = api_key_create(name=username, scope=scope, user=user)
    return client_with(plaintext)


# -- URL policy at submit -----------------------------------------------------------------------


@pytest.mark.parametrize("uri", SSRF_CORPUS)
def test_every_ssrf_form_is_refused_at_submit_with_a_400_naming_the_uri(
    uri: str, api_client: APIClient, configure: Callable[..., None]
) -> None:
    configure(security={"url_policy": STRICT})

    response = api_client.post("/api/v1/tasks/", {"url": uri}, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error", "detail"}
    (message,) = body["detail"]["url"]
    assert message.startswith(repr(uri[:100]))
    assert Task.objects.count() == 0


def test_a_metadata_address_is_refused_by_the_default_policy_too(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/tasks/",
        {"uris": ["http://example.com/a", "http://[::ffff:169.254.169.254]/latest"]},
        format="json",
    )

    assert response.status_code == 400
    (message,) = response.json()["detail"]["uris"]
    assert "denied by the URL policy" in message and "169.254.0.0/16" in message


def test_a_batch_with_one_denied_url_creates_nothing(
    api_client: APIClient, configure: Callable[..., None]
) -> None:
    configure(security={"url_policy": STRICT})
    items = [{"url": "http://example.com/a"}, {"url": "http://0x7f.1/"}]

    response = api_client.post("/api/v1/tasks/batch/", {"tasks": items}, format="json")

    assert response.status_code == 400
    assert "1" in response.json()["detail"]["tasks"]
    assert Task.objects.count() == 0


def test_a_denied_tracker_option_is_refused_at_submit(api_client: APIClient) -> None:
    body = {"url": "http://example.com/a.torrent", "options": {"bt-tracker": "udp://[fe80::1]:1"}}

    response = api_client.post("/api/v1/tasks/", body, format="json")

    assert response.status_code == 400
    assert "bt-tracker" in response.json()["detail"]["options"][0]


def test_registration_hands_the_agent_the_same_url_policy(
    join_key: str, configure: Callable[..., None]
) -> None:
    configure(security={"url_policy": STRICT})
    body = {"name": "w1", "max_tasks": 2}

    client = APIClient()
    client.credentials(HTTP_X_JOIN_KEY=join_key)

    response = client.post("/api/agent/v1/register", body, format="json")

    assert response.status_code == 200
    assert UrlPolicy.from_dict(response.json()["url_policy"]) == STRICT


# -- who sees what ------------------------------------------------------------------------------


def _task_of(owner: Any) -> Task:
    return services.task_create(owner=owner, url="http://example.com/owned.iso")


OWN_TASK_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("get", "/api/v1/tasks/{id}/", None),
    ("get", "/api/tasks/{id}", None),
    ("get", "/api/v1/tasks/{id}/events/", None),
    ("get", "/api/v1/tasks/{id}/files/", None),
    ("post", "/api/v1/tasks/{id}/files/", {"select": [1]}),
    ("post", "/api/v1/tasks/{id}/options/", {"options": {"max-download-limit": "1M"}}),
    ("patch", "/api/v1/tasks/{id}/", {"priority": "high"}),
    ("post", "/api/v1/tasks/{id}/pause/", None),
    ("post", "/api/v1/tasks/{id}/cancel/", None),
    ("post", "/api/v1/tasks/{id}/retry/", None),
    ("post", "/api/v1/tasks/{id}/priority/", {"priority": 4}),
    ("delete", "/api/v1/tasks/{id}/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OWN_TASK_REQUESTS)
def test_another_users_task_is_404_for_every_api_call(
    method: str, path: str, body: dict[str, Any] | None
) -> None:
    bob = User.objects.create_user("bob")
    task = _task_of(bob)
    alice = user_client("alice")

    response = getattr(alice, method)(path.format(id=task.pk), body, format="json")

    assert response.status_code == 404
    assert set(response.json()) == {"error", "detail"}
    task.refresh_from_db()
    assert task.status == "pending" and task.priority == 2 and task.options == {}


def test_the_task_list_shows_only_the_callers_own_tasks() -> None:
    bob = User.objects.create_user("bob")
    bobs = _task_of(bob)
    alice = user_client("alice")
    alices = alice.post("/api/v1/tasks/", {"url": "http://example.com/a"}, format="json").json()
    staff = user_client("root", staff=True, scope="read")

    listed = alice.get("/api/v1/tasks/").json()["results"]
    searched = alice.get("/api/v1/tasks/", {"search": "owned"}).json()["results"]
    everything = staff.get("/api/v1/tasks/").json()["results"]

    assert [t["id"] for t in listed] == [alices["id"]]
    assert searched == []
    assert {t["id"] for t in everything} == {alices["id"], bobs.pk}
    assert Task.objects.get(pk=alices["id"]).owner.username == "alice"


def test_the_owner_can_act_on_their_own_task() -> None:
    alice_user = User.objects.create_user("alice")
    _, plaintext = api_key_create(name="a", scope="write", user=alice_user)
    task = _task_of(alice_user)

    response = client_with(plaintext).post(f"/api/v1/tasks/{task.pk}/cancel/")

    assert response.status_code == 200


def test_ownerless_keys_see_ownerless_tasks_and_an_admin_key_sees_all(
    write_key: str,
) -> None:
    mine = client_with(write_key).post("/api/v1/tasks/", {"url": "http://example.com/k"})
    bobs = _task_of(User.objects.create_user("bob"))
    _, admin_key = api_key_create(name="admin", scope="admin")
    _, read_key = api_key_create(name="reader", scope="read")

    ownerless = client_with(write_key).get("/api/v1/tasks/").json()["results"]
    reader = client_with(read_key).get("/api/v1/tasks/").json()["results"]
    admin = client_with(admin_key).get("/api/v1/tasks/").json()["results"]

    assert [t["id"] for t in ownerless] == [mine.json()["id"]]
    assert [t["id"] for t in reader] == [mine.json()["id"]]
    assert {t["id"] for t in admin} == {mine.json()["id"], bobs.pk}
    assert client_with(write_key).get(f"/api/v1/tasks/{bobs.pk}/").status_code == 404


def test_a_url_the_agent_refuses_after_dns_fails_the_task_at_once_with_the_reason(
    agent_client: APIClient, registration: Registration
) -> None:
    from dispatcher.placement import task_assign_pending

    task = services.task_create(url="http://metadata.test/latest")
    assert task_assign_pending() == 1
    task.refresh_from_db()
    reason = "'http://metadata.test/latest' denied by the URL policy: metadata.test resolves to x"

    response = agent_client.post(
        f"/api/agent/v1/tasks/{task.pk}/failed",
        {"epoch": task.epoch, "error_code": URL_DENIED_ERROR_CODE, "error_message": reason},
        format="json",
    )

    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.error_class) == ("failed", "permanent")
    assert task.error_message == reason
    assert task.attempts <= 1


# -- rate limits and caps -----------------------------------------------------------------------


def test_reads_over_the_rate_limit_answer_429_with_retry_after(
    api_client: APIClient, configure: Callable[..., None]
) -> None:
    configure(security={"rate_limits": {"read": "3/min", "write": "600/min"}})

    codes = [api_client.get("/api/v1/tasks/").status_code for _ in range(4)]
    refused = api_client.get("/api/v1/tasks/")

    assert codes == [200, 200, 200, 429]
    assert int(refused["Retry-After"]) > 0
    assert set(refused.json()) == {"error", "detail"}
    assert "throttled" in refused.json()["error"].lower()


def test_rate_limits_count_per_key(write_key: str, configure: Callable[..., None]) -> None:
    configure(security={"rate_limits": {"read": "600/min", "write": "1/min"}})
    _, other_key = api_key_create(name="other", scope="write")
    body = {"url": "http://example.com/a"}

    first = client_with(write_key).post("/api/v1/tasks/", body, format="json")
    second = client_with(write_key).post("/api/v1/tasks/", body, format="json")
    other = client_with(other_key).post("/api/v1/tasks/", body, format="json")

    assert (first.status_code, second.status_code, other.status_code) == (201, 429, 201)


def test_agent_endpoints_are_not_throttled_by_user_rates(
    agent_client: APIClient, configure: Callable[..., None]
) -> None:
    configure(security={"rate_limits": {"read": "1/min", "write": "1/min"}})

    codes = {agent_client.post("/api/agent/v1/heartbeat", {}, format="json").status_code}
    codes |= {agent_client.post("/api/agent/v1/heartbeat", {}, format="json").status_code}

    assert codes == {200}


def test_a_full_queue_refuses_more_tasks_with_429(configure: Callable[..., None]) -> None:
    configure(security={"max_queued_per_user": 2})
    alice = user_client("alice")
    body = {"url": "http://example.com/a"}

    codes = [alice.post("/api/v1/tasks/", body, format="json").status_code for _ in range(3)]
    batch = alice.post("/api/v1/tasks/batch/", {"tasks": [body]}, format="json")
    bob = user_client("bob").post("/api/v1/tasks/", body, format="json")
    _, admin_key = api_key_create(name="operator", scope="admin")
    admin = [client_with(admin_key).post("/api/v1/tasks/", body).status_code for _ in range(3)]

    assert codes == [201, 201, 429]
    assert batch.status_code == 429
    assert "max_queued_per_user" in batch.json()["error"]
    assert bob.status_code == 201
    assert admin == [201, 201, 201]


def test_more_than_32_headers_per_task_are_refused(api_client: APIClient) -> None:
    headers = [f"X-H{i}: v" for i in range(33)]
    body = {"url": "http://example.com/a", "options": {"header": headers}}

    response = api_client.post("/api/v1/tasks/", body, format="json")

    assert response.status_code == 400
    assert "at most 32 headers" in response.json()["detail"]["options"][0]
