"""Per-key rate limits for the user API (`security.rate_limits`), counted in Django's cache.

One bucket per API key (per login for browser sessions, per address for anonymous callers),
separately for reads and writes. Over the limit DRF answers 429 with ``Retry-After``; the JSON
error shape comes from `ariacluster.http.exception_handler`. Agent endpoints opt out (their
traffic is bounded by the protocol, and a throttled heartbeat would expire leases).
With Redis (`REDIS_URL`) the counters are shared by every dispatcher process.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from ariacluster.auth import ApiCredential


class _KeyRateThrottle(SimpleRateThrottle):
    scope = ""
    # Does this throttle count requests with a safe method (GET/HEAD/OPTIONS)?
    counts_safe = True

    def get_rate(self) -> str | None:
        # Read at each request so a changed configuration (and the tests) take effect at once.
        return settings.ARIACLUSTER.security.rate_limits.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        if (request.method in SAFE_METHODS) != self.counts_safe:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        auth = request.auth
        if isinstance(auth, ApiCredential):
            ident = f"key-{auth.prefix}" if auth.prefix else f"config-{auth.name}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ReadRateThrottle(_KeyRateThrottle):
    scope = "read"
    counts_safe = True


class WriteRateThrottle(_KeyRateThrottle):
    scope = "write"
    counts_safe = False
