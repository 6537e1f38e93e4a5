"""Secrets (API keys, worker tokens, join keys) and the user-facing API authentication.

Every secret has the shape ``<tag>_<prefix>_<random>``: the tag says what it is (``ack`` user API
key, ``acw`` worker token, ``acj`` join key), the prefix finds the row, and only the SHA-256 of the
whole string is stored. Comparison uses `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

USER_KEY_TAG = "ack"
WORKER_TOKEN_TAG = "acw"
JOIN_KEY_TAG = "acj"


@dataclass(frozen=True)
class IssuedSecret:
    """A freshly generated secret: `plaintext` is shown once, the rest is stored."""

    plaintext: str
    prefix: str
    digest: str


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def issue_secret(tag: str) -> IssuedSecret:
    prefix = secrets.token_hex(4)
    plaintext = f"{tag}_{prefix}_{secrets.token_urlsafe(32)}"
    return IssuedSecret(plaintext=plaintext, prefix=prefix, digest=hash_secret(plaintext))


def split_secret(plaintext: str, tag: str) -> str | None:
    """Return the lookup prefix of a secret with this tag, or None if it is not one."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != tag or len(parts[1]) != 8:
        return None
    return parts[1]


def digest_matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(hash_secret(plaintext), digest)


def config_secret_matches(plaintext: str, configured: tuple[str, ...]) -> bool:
    """Constant-time check of a presented secret against plaintext keys from the config file."""
    presented = hash_secret(plaintext)
    found = False
    for key in configured:
        found |= hmac.compare_digest(presented, hash_secret(key))
    return found


@dataclass(frozen=True)
class ApiCredential:
    """What `request.auth` holds for an API-key request."""

    scope: str
    key_id: int | None
    name: str
    # The key's lookup prefix (random per key): what rate limits count by.
    prefix: str = ""


class KeyPrincipal:
    """`request.user` for a key that belongs to no Django user (config keys, ownerless keys)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None
    id = None

    def __init__(self, name: str, scope: str) -> None:
        self.username = f"key:{name}"
        self.is_staff = scope == "admin"
        self.is_superuser = False

    def __str__(self) -> str:
        return self.username


LAST_USED_RESOLUTION = timedelta(seconds=60)


def presented_api_key(request: Request) -> str | None:
    """The key from `X-API-Key` or the original's `?api_key=` parameter."""
    header = request.META.get("HTTP_X_API_KEY")
    if header:
        return str(header).strip()
    value = request.query_params.get("api_key") if hasattr(request, "query_params") else None
    return value.strip() if value else None


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate users by API key (header or query parameter)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiCredential] | None:
        from dispatcher.models import ApiKey

        plaintext = presented_api_key(request)
        if not plaintext:
            return None
        if split_secret(plaintext, WORKER_TOKEN_TAG) or split_secret(plaintext, JOIN_KEY_TAG):
            raise exceptions.AuthenticationFailed(
                "Worker credentials and join keys cannot call user endpoints; use an API key "
                "(manage.py create_api_key)."
            )
        prefix = split_secret(plaintext, USER_KEY_TAG)
        if prefix is not None:
            key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
            if key is None or not digest_matches(plaintext, key.key_hash):
                raise exceptions.AuthenticationFailed("Invalid API key.")
            now = timezone.now()
            if not key.is_usable(now):
                raise exceptions.AuthenticationFailed("API key revoked or expired.")
            if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
                ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            user = key.user if key.user is not None else KeyPrincipal(key.name, key.scope)
            return user, ApiCredential(
                scope=key.scope, key_id=key.pk, name=key.name, prefix=key.prefix
            )
        if config_secret_matches(plaintext, settings.ARIACLUSTER.security.api_keys):
            return KeyPrincipal("config", "admin"), ApiCredential("admin", None, "config")
        raise exceptions.AuthenticationFailed("Invalid API key.")

    def authenticate_header(self, request: Request) -> str:
        return 'X-API-Key realm="ariacluster"'


SCOPE_RANK = {"read": 1, "write": 2, "admin": 3}


class HasApiScope(BasePermission):
    """Reads need scope `read`, writes `write`; a view may ask more with `required_scope`.

    Logged-in (session) users act with `write`, staff with `admin`. With
    `security.api_key_required: false` anonymous callers act with `write`.
    """

    message = "Authentication required: send an API key in the X-API-Key header."

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = getattr(view, "required_scope", None)
        if needed is None:
            needed = "read" if request.method in SAFE_METHODS else "write"
        auth = request.auth
        if isinstance(auth, ApiCredential):
            have = auth.scope
        elif request.user is not None and request.user.is_authenticated:
            have = "admin" if request.user.is_staff else "write"
        elif not settings.ARIACLUSTER.security.api_key_required:
            have = "write"
        else:
            return False
        if SCOPE_RANK[have] < SCOPE_RANK[needed]:
            self.message = f"This API key's scope '{have}' does not allow this; '{needed}' needed."
            return False
        return True
