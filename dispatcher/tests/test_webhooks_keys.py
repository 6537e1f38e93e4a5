"""A key's webhook URL: set from `create_api_key --webhook-url`, the dashboard's keys page and
the admin; refused by the URL policy with a clear message and nothing created; the signing
secret shown once. The admin's delivery log renders without secrets and can retry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.test import Client

from dispatcher.keys import api_key_create, api_key_set_webhook
from dispatcher.models import ApiKey, Task, TaskStatus, WebhookDelivery, WebhookStatus
from dispatcher.tests.commands import run_command
from dispatcher.tests.dashboard_fixtures import member, member_client
from worker_agent.urlpolicy import UrlPolicy

__all__ = ["member", "member_client"]

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/in"
METADATA = "http://169.254.169.254/latest/meta-data/"


@pytest.fixture
def superuser_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw-root-123456"))
    return client


def test_create_api_key_with_a_webhook_url_prints_its_secret_once() -> None:
    output = run_command("create_api_key", "--name", "ci", "--webhook-url", HOOK).stdout

    key = ApiKey.objects.get()
    assert key.webhook_url == HOOK
    assert key.webhook_secret.startswith("whsec_")
    assert key.webhook_secret in output
    assert key.webhook_secret not in run_command("list_api_keys").stdout


def test_create_api_key_refuses_a_url_the_policy_denies_and_creates_nothing() -> None:
    with pytest.raises(CommandError) as excinfo:
        run_command("create_api_key", "--name", "ci", "--webhook-url", METADATA)

    assert "--webhook-url: denied by the URL policy" in str(excinfo.value)
    assert "169.254.0.0/16" in str(excinfo.value)
    assert ApiKey.objects.count() == 0


def test_create_api_key_refuses_loopback_when_the_policy_does(
    configure: Callable[..., None],
) -> None:
    configure(security={"url_policy": UrlPolicy(allow_loopback=False)})

    with pytest.raises(CommandError, match="loopback"):
        run_command("create_api_key", "--name", "x", "--webhook-url", "http://localhost:9/h")

    assert ApiKey.objects.count() == 0


def test_a_key_without_a_webhook_has_no_secret() -> None:
    key, _ = api_key_create(name="plain")

    assert (key.webhook_url, key.webhook_secret) == ("", "")


def test_a_new_path_on_the_same_host_keeps_the_secret_and_clearing_drops_it() -> None:
    key, _ = api_key_create(name="k")
    first = api_key_set_webhook(key=key, url=HOOK)
    assert first is not None and key.webhook_secret == first

    assert api_key_set_webhook(key=key, url="https://HOOKS.example.com:8443/v2") is None
    assert key.webhook_secret == first

    api_key_set_webhook(key=key, url="")
    key.refresh_from_db()
    assert (key.webhook_url, key.webhook_secret) == ("", "")


def test_a_url_on_another_host_gets_a_new_secret() -> None:
    key, _ = api_key_create(name="k", webhook_url=HOOK)
    old = key.webhook_secret

    new = api_key_set_webhook(key=key, url="https://other.example.com/in")

    # The old receiver knows `old`: it must not be able to sign for the new one.
    assert new is not None and new != old
    key.refresh_from_db()
    assert key.webhook_secret == new


def test_the_keys_page_creates_a_key_with_a_webhook_and_shows_its_secret_once(
    member_client: Client,
) -> None:
    response = member_client.post(
        "/keys/", {"name": "notify", "scope": "write", "webhook_url": HOOK}
    )

    key = ApiKey.objects.get()
    page = response.content.decode()
    assert response.status_code == 200
    assert key.webhook_url == HOOK
    assert key.webhook_secret in page
    assert key.webhook_secret not in member_client.get("/keys/").content.decode()


def test_the_keys_page_refuses_a_denied_webhook_url_and_creates_nothing(
    member_client: Client,
) -> None:
    response = member_client.post(
        "/keys/", {"name": "notify", "scope": "write", "webhook_url": METADATA}
    )

    assert response.status_code == 400
    assert "Webhook URL: denied by the URL policy" in response.content.decode()
    assert ApiKey.objects.count() == 0


def test_the_admin_creates_a_key_with_a_webhook_and_refuses_a_denied_url(
    superuser_client: Client,
) -> None:
    refused = superuser_client.post(
        "/admin/dispatcher/apikey/add/",
        {"name": "k", "scope": "write", "new_webhook_url": METADATA},
    )
    assert refused.status_code == 200
    assert "denied by the URL policy" in refused.content.decode()
    assert ApiKey.objects.count() == 0

    created = superuser_client.post(
        "/admin/dispatcher/apikey/add/",
        {"name": "k", "scope": "write", "new_webhook_url": HOOK},
        follow=True,
    )

    key = ApiKey.objects.get()
    assert key.webhook_url == HOOK
    assert key.webhook_secret in created.content.decode()


def test_the_delivery_log_renders_without_user_info_and_retries_now(
    superuser_client: Client,
) -> None:
    task = Task.objects.create(name="done", status=TaskStatus.COMPLETED)
    delivery = WebhookDelivery.objects.create(
        event="task.failed",
        task=task,
        url="https://hook:hunter2@hooks.example.com/in?token=abc",
        status=WebhookStatus.FAILED,
        attempts=10,
        last_status_code=503,
        last_error="HTTP 503: busy",
    )

    page = superuser_client.get("/admin/dispatcher/webhookdelivery/")
    # A search must not confirm guesses of the user info, a character at a time.
    guessed = superuser_client.get("/admin/dispatcher/webhookdelivery/?q=hook:hunter")
    assert guessed.context["cl"].result_count == 0
    detail = superuser_client.get(f"/admin/dispatcher/webhookdelivery/{delivery.pk}/change/")
    filtered = superuser_client.get("/admin/dispatcher/webhookdelivery/?status=failed&q=abc")

    for response in (page, detail, filtered):
        text = response.content.decode()
        assert response.status_code == 200
        assert "hunter2" not in text and "token=abc" not in text
    assert "https://hooks.example.com/in?token=***" in page.content.decode()
    assert "HTTP 503: busy" in page.content.decode()

    retried = superuser_client.post(
        "/admin/dispatcher/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [delivery.pk]},
        follow=True,
    )

    assert "1 delivery(ies) will be sent" in retried.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookStatus.PENDING, 0)


def test_the_api_key_changelist_shows_the_webhook_without_its_secret(
    superuser_client: Client,
) -> None:
    key, _ = api_key_create(name="k", webhook_url="https://u:pw@hooks.example.com/in")

    page = superuser_client.get("/admin/dispatcher/apikey/").content.decode()
    detail = superuser_client.get(f"/admin/dispatcher/apikey/{key.pk}/change/").content.decode()

    assert "https://hooks.example.com/in" in page
    assert key.webhook_secret not in page and key.webhook_secret not in detail
    assert "pw@" not in page


def test_the_api_key_change_page_never_shows_the_webhook_user_info(
    superuser_client: Client,
) -> None:
    key, _ = api_key_create(
        name="k", webhook_url="https://u:hunter2@hooks.example.com/in?sig=sig-value-42"
    )

    detail = superuser_client.get(f"/admin/dispatcher/apikey/{key.pk}/change/").content.decode()

    assert "https://hooks.example.com/in?sig=***" in detail
    assert "hunter2" not in detail and "sig-value-42" not in detail


def test_the_admin_keeps_replaces_or_removes_a_keys_webhook(superuser_client: Client) -> None:
    key, _ = api_key_create(name="k", webhook_url="https://u:hunter2@hooks.example.com/in")
    secret = key.webhook_secret
    change = f"/admin/dispatcher/apikey/{key.pk}/change/"
    form = {"name": "renamed", "scope": "read"}

    kept = superuser_client.post(change, form, follow=True)
    key.refresh_from_db()
    assert (key.name, key.webhook_url, key.webhook_secret) == (
        "renamed",
        "https://u:hunter2@hooks.example.com/in",
        secret,
    )
    assert "signing secret" not in kept.content.decode()

    moved = superuser_client.post(
        change, {**form, "new_webhook_url": "https://ci.example.org/hook"}, follow=True
    )
    key.refresh_from_db()
    assert key.webhook_url == "https://ci.example.org/hook"
    assert key.webhook_secret != secret
    assert key.webhook_secret in moved.content.decode(), "the new secret is shown once"

    superuser_client.post(change, {**form, "remove_webhook": "on"})
    key.refresh_from_db()
    assert (key.webhook_url, key.webhook_secret) == ("", "")


def test_the_admin_refuses_a_new_url_together_with_removing_the_webhook(
    superuser_client: Client,
) -> None:
    key, _ = api_key_create(name="k", webhook_url=HOOK)

    response = superuser_client.post(
        f"/admin/dispatcher/apikey/{key.pk}/change/",
        {"name": "k", "scope": "write", "new_webhook_url": HOOK + "2", "remove_webhook": "on"},
    )

    assert response.status_code == 200
    assert "not both" in response.content.decode()
    key.refresh_from_db()
    assert key.webhook_url == HOOK


def test_the_keys_page_never_echoes_the_webhook_urls_credentials(member_client: Client) -> None:
    url = "https://hookuser:hookpass@127.0.0.1:9/hook"
    response = member_client.post(
        "/keys/", {"name": "notify", "scope": "write", "webhook_url": url}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert ApiKey.objects.get().webhook_url == url
    assert "hookpass" not in page
    assert "127.0.0.1:9/hook" in page
