"""One webhook POST over the wire, bounded in time and checked against the URL policy.

No database here: `webhook_post` runs on sender threads, outside any transaction, and never
raises; every failure comes back as an `Outcome`.

* The URL policy is checked again right before the send, after DNS; the connection then goes to
  one of the very addresses that were checked, and redirects are not followed, so a receiver
  cannot bounce the dispatcher elsewhere.
* The whole request (DNS, connect, TLS, sending, the answer's status and headers) lasts at
  most `timeout` seconds by the wall clock. http.client's own timeout applies to each socket
  operation, and getaddrinfo has none, so a receiver dripping one byte every few seconds, or a
  stuck resolver, would otherwise hold a sender thread forever: DNS is waited for at most the
  time left, each connect gets the time left, and a watchdog shuts the socket down when the
  deadline passes, which wakes any blocked read or write.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ariacluster.config import webhook_policy
from dispatcher.redaction import webhook_display_url
from worker_agent.urlpolicy import UrlDenied, UrlPolicy, host_address

logger = logging.getLogger(__name__)

# What of a receiver's answer is kept in `last_error` (enough to read an error message).
ERROR_SNIPPET = 300
# A request may outlast its deadline by this much: the watchdog's wake-up and the socket call
# it interrupts. Part of how long a sender's claim must last (`dispatcher.webhooks`).
DEADLINE_SLACK = 1.0
# Name lookups run here so that one with no answer can be abandoned at the deadline. A lookup
# stuck in the resolver keeps its thread until the resolver gives up; this caps how many.
_dns_lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


@dataclass(frozen=True)
class SignedRequest:
    """One signed delivery, ready to send without touching the database."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str = ""
    # Retrying cannot help (the URL policy refuses it, it cannot be sent as written or signed).
    permanent: bool = False


class _DeadlinePassed(TimeoutError):
    """Raised by this module when a request runs out of time; says where it was."""


class _Deadline:
    """The wall-clock limit of one request: the time left, and a watchdog that shuts the
    request's socket down when the limit passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._watchdog = threading.Timer(seconds, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def left(self) -> float:
        """Seconds left; `_DeadlinePassed` if there are none."""
        left = self._ends - time.monotonic()
        if self.expired or left <= 0:
            raise _DeadlinePassed(f"no answer within {self.seconds:g} s in total")
        return left

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (at once if it has passed already)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut_down(sock)

    def cancel(self) -> None:
        self._watchdog.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut_down(self._sock)


def _shut_down(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for TLS: SSLSocket's own would drop its state
        # under the thread still reading.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # Closed already, or not connected yet.


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connect to addresses already checked by the URL policy, not to a fresh DNS answer, and
    let the deadline's watchdog shut the socket down."""

    def __init__(self, host: str, port: int, addresses: list[str], deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.seconds)
        self._addresses = addresses
        self._deadline = deadline

    def _open(self) -> socket.socket:
        last: OSError = OSError(f"no address for {self.host}")
        for address in self._addresses:
            seconds = self._deadline.left()
            try:
                sock = socket.create_connection((address, self.port), seconds)
            except OSError as exc:
                last = exc
                continue
            self._deadline.watch(sock)
            return sock
        raise last

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, addresses: list[str], deadline: _Deadline) -> None:
        super().__init__(host, port, addresses, deadline)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._open()
        # The certificate is checked against the URL's host name, as a browser would. The
        # handshake runs once the watchdog holds the TLS socket, so it is bounded too.
        tls = self._tls.wrap_socket(
            self.sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        self.sock = tls
        self._deadline.watch(tls)
        tls.do_handshake()


def _resolve(host: str, port: int, deadline: _Deadline) -> list[Any]:
    lookup = _dns_lookups.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return lookup.result(timeout=deadline.left())
    except TimeoutError:
        lookup.cancel()
        raise _DeadlinePassed(f"cannot resolve {host} within {deadline.seconds:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None


def _checked_addresses(
    policy: UrlPolicy, url: str, host: str, port: int, deadline: _Deadline
) -> list[str]:
    """Resolve `host` and return its addresses if the policy allows every one (UrlDenied else)."""
    web_only = webhook_policy(policy)
    web_only.check_uri(url)
    literal = host_address(host)
    if literal is not None:
        return [str(literal)]
    addresses: list[str] = []
    for answer in _resolve(host, port, deadline):
        address = ipaddress.ip_address(str(answer[4][0]).split("%", 1)[0])
        refusal = web_only.address_refusal(address, port)
        if refusal:
            raise UrlDenied(url, f"{host} resolves to {refusal}")
        addresses.append(str(address))
    return list(dict.fromkeys(addresses))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_SNIPPET]


def webhook_post(request: SignedRequest, *, policy: UrlPolicy, timeout: float) -> Outcome:
    """POST `request` and say how it went, in at most `timeout` seconds (+ `DEADLINE_SLACK`)
    in total. Never raises: every failure, expected or not, is an `Outcome`."""
    deadline = _Deadline(timeout)
    try:
        return _post(request, policy, deadline)
    except UrlDenied as exc:
        return Outcome(False, error=f"refused by the URL policy: {exc.reason}", permanent=True)
    except _DeadlinePassed as exc:
        return Outcome(False, error=f"timed out: {exc}")
    except Exception as exc:
        if deadline.expired:
            # The watchdog shut the socket down: whatever the interrupted call raised, the
            # cause is the deadline.
            return Outcome(False, error=f"timed out: no answer within {timeout:g} s in total")
        if isinstance(exc, ValueError | http.client.InvalidURL):
            # Not sendable as written (a non-ASCII path stored before URLs were checked for
            # it, a port out of range): the same URL fails the same way every time.
            return Outcome(
                False, error=f"cannot send to this URL: {_describe(exc)}", permanent=True
            )
        if not isinstance(exc, OSError | http.client.HTTPException):
            logger.exception("webhook to %s failed unexpectedly", webhook_display_url(request.url))
        return Outcome(False, error=_describe(exc))
    finally:
        deadline.cancel()


def _post(request: SignedRequest, policy: UrlPolicy, deadline: _Deadline) -> Outcome:
    parts = urlsplit(request.url)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    addresses = _checked_addresses(policy, request.url, host, port, deadline)
    headers = dict(request.headers)
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    kind = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    conn = kind(host, port, addresses, deadline)
    try:
        conn.request("POST", target, body=request.body, headers=headers)
        response = conn.getresponse()
        status = response.status
        if 200 <= status < 300:
            # Received: the body does not matter (and may never come).
            return Outcome(True, status_code=status)
        if 300 <= status < 400:
            where = webhook_display_url(response.getheader("Location") or "?")
            return Outcome(False, status, f"HTTP {status}: redirects are not followed ({where})")
        try:
            snippet = response.read(ERROR_SNIPPET).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            snippet = "(the answer's body could not be read)"
    finally:
        conn.close()
    text = " ".join(snippet.split())
    return Outcome(False, status, f"HTTP {status}: {text}"[:ERROR_SNIPPET])
