"""API key writes: create (plaintext returned once), revoke, and the key's webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from ariacluster.auth import USER_KEY_TAG, issue_secret
from dispatcher.models import ApiKey, ApiScope
from dispatcher.webhooks import webhook_secret_new, webhook_url_check


def api_key_create(
    *,
    name: str,
    scope: str = ApiScope.WRITE,
    user: Any = None,
    expires_at: datetime | None = None,
    webhook_url: str = "",
) -> tuple[ApiKey, str]:
    """Store a new key as prefix + hash; return the row and the plaintext (shown once).

    With `webhook_url` (checked against the URL policy first; a refusal raises
    `ValidationError` and creates nothing) the key also gets a webhook signing secret, in
    `key.webhook_secret`: show it to the user this once too.
    """
    if scope not in ApiScope.values:
        raise ValueError(f"scope must be one of {ApiScope.values}, got {scope!r}")
    url = webhook_url_check(webhook_url) if webhook_url else ""
    secret = issue_secret(USER_KEY_TAG)
    key = ApiKey.objects.create(
        name=name,
        scope=scope,
        user=user,
        prefix=secret.prefix,
        key_hash=secret.digest,
        expires_at=expires_at,
        webhook_url=url,
        webhook_secret=webhook_secret_new() if url else "",
    )
    return key, secret.plaintext


def api_key_set_webhook(*, key: ApiKey, url: str) -> str | None:
    """Point the key's webhook at `url` ("" turns it off); raises `ValidationError` if refused.

    Returns a new signing secret (to show once) when the key had none or the URL moves to
    another host, else None. Another host may be another party: with the old secret, the old
    receiver could forge deliveries to the new one. A new path or port on the same host keeps
    the secret, so the receiver keeps verifying.
    """
    clean = webhook_url_check(url) if url else ""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        moved = bool(clean) and _host(clean) != _host(locked.webhook_url)
        created = webhook_secret_new() if clean and (moved or not locked.webhook_secret) else None
        locked.webhook_url = clean
        locked.webhook_secret = created or (locked.webhook_secret if clean else "")
        locked.save(update_fields=["webhook_url", "webhook_secret"])
    key.webhook_url, key.webhook_secret = locked.webhook_url, locked.webhook_secret
    return created


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return url


def api_key_rotate_webhook_secret(*, key: ApiKey) -> str:
    """Replace the key's webhook signing secret; the new one is returned (show it once).

    Deliveries sent from now on, retries included, are signed with the new secret.
    """
    if not key.webhook_url:
        raise ValueError(f"API key {key.prefix} has no webhook URL")
    secret = webhook_secret_new()
    ApiKey.objects.filter(pk=key.pk).update(webhook_secret=secret)
    key.webhook_secret = secret
    return secret


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revocation takes effect on the key's next request (and stops its webhook)."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
