"""Hide credentials in URIs before they are shown to anyone."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that commonly carry a secret (pre-signed URLs, token links).
_SECRET_PARAM = re.compile(
    r"(token|secret|passw|pwd|auth|key|sig|signature|credential|session)", re.IGNORECASE
)


def redact_uri(uri: str) -> str:
    """Return `uri` with the password of its user info and secret-looking query values masked.

    ``https://bob:pw@host/f?token=abc&x=1`` becomes ``https://bob:***@host/f?token=***&x=1``.
    Magnet links and text that is not a URL are returned unchanged.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme or parts.scheme.lower() == "magnet" or not parts.netloc:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(name) for name, _ in pairs):
            query = urlencode(
                [(n, MASK if _SECRET_PARAM.search(n) else v) for n, v in pairs], safe="*"
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def webhook_display_url(url: str) -> str:
    """`url` without any user info (a webhook's is a Basic-auth credential, user name included)
    and with secret-looking query values masked, for people and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    netloc = parts.netloc.rpartition("@")[2]
    return redact_uri(parts._replace(netloc=netloc).geturl())
