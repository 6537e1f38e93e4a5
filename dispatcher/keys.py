"""API key writes: create (plaintext returned once) and revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from ariacluster.auth import USER_KEY_TAG, issue_secret
from dispatcher.models import ApiKey, ApiScope


def api_key_create(
    *, name: str, scope: str = ApiScope.WRITE, user: Any = None, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Store a new key as prefix + hash; return the row and the plaintext (shown once)."""
    if scope not in ApiScope.values:
        raise ValueError(f"scope must be one of {ApiScope.values}, got {scope!r}")
    secret = issue_secret(USER_KEY_TAG)
    key = ApiKey.objects.create(
        name=name,
        scope=scope,
        user=user,
        prefix=secret.prefix,
        key_hash=secret.digest,
        expires_at=expires_at,
    )
    return key, secret.plaintext


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Revocation takes effect on the key's next request."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key
