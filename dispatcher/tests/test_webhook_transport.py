"""One webhook POST over the wire (`dispatcher.webhook_transport.webhook_post`): whatever the
receiver or the resolver does, it ends within `webhooks.timeout` in total and comes back as an
outcome, never as an exception. Real HTTP and HTTPS receivers on 127.0.0.1; only a resolver
that never answers is faked, the one fault we cannot produce for real.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher import webhook_transport
from dispatcher.tests.webhook_receiver import Receiver, receiver
from dispatcher.webhook_transport import DEADLINE_SLACK, SignedRequest, webhook_post
from worker_agent.urlpolicy import UrlPolicy

__all__ = ["receiver"]

POLICY = UrlPolicy()  # loopback allowed, as in development
TIMEOUT = 0.5


def post(url: str, timeout: float = TIMEOUT) -> tuple[webhook_transport.Outcome, float]:
    started = time.monotonic()
    outcome = webhook_post(
        SignedRequest(url, b"{}", {"Content-Type": "application/json"}),
        policy=POLICY,
        timeout=timeout,
    )
    return outcome, time.monotonic() - started


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *"openssl req -x509 -nodes -days 2 -subj /CN=127.0.0.1".split(),
            *"-newkey ec -pkeyopt ec_paramgen_curve:prime256v1".split(),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture
def tls_receiver(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Receiver]:
    """An HTTPS receiver whose certificate the sender trusts (through SSL_CERT_FILE, read by
    the sender's default TLS context, so the code under test is unchanged)."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = Receiver(tls=context)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_timeout(receiver: Receiver) -> None:
    # One byte every 0.1 s: each read is in time, the whole answer would take about 5 s.
    receiver.drip = 0.1

    outcome, took = post(receiver.url())

    assert not outcome.delivered and not outcome.permanent
    assert outcome.error == f"timed out: no answer within {TIMEOUT:g} s in total"
    assert took < TIMEOUT + DEADLINE_SLACK
    assert len(receiver.requests) == 1


def test_an_https_receiver_is_posted_to_over_verified_tls(tls_receiver: Receiver) -> None:
    outcome, _ = post(tls_receiver.url("/secure"), timeout=5)

    assert (outcome.delivered, outcome.status_code) == (True, 204)
    assert tls_receiver.requests[0].path == "/secure"


def test_an_https_receiver_dripping_its_answer_is_cut_off_at_the_timeout(
    tls_receiver: Receiver,
) -> None:
    tls_receiver.drip = 0.1

    outcome, took = post(tls_receiver.url())

    assert not outcome.delivered
    assert "timed out" in outcome.error
    assert took < TIMEOUT + DEADLINE_SLACK


def test_a_resolver_that_never_answers_is_given_up_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def stuck_dns(*args: Any, **kwargs: Any) -> list[Any]:
        release.wait(30)
        raise socket.gaierror("gave up")

    monkeypatch.setattr(webhook_transport.socket, "getaddrinfo", stuck_dns)
    try:
        outcome, took = post("http://hooks.example.test/in")
    finally:
        release.set()

    assert not outcome.delivered and not outcome.permanent
    assert outcome.error == f"timed out: cannot resolve hooks.example.test within {TIMEOUT:g} s"
    assert took < TIMEOUT + DEADLINE_SLACK


def test_a_non_ascii_path_fails_for_good_without_a_request(receiver: Receiver) -> None:
    # Refused when configured now; a row stored before that check must still not crash a batch.
    outcome, _ = post(receiver.url("/café"))

    assert not outcome.delivered and outcome.permanent
    assert outcome.error.startswith("cannot send to this URL: UnicodeEncodeError")
    assert receiver.requests == []


def test_a_port_out_of_range_fails_for_good() -> None:
    outcome, _ = post("http://127.0.0.1:99999/in")

    assert outcome.permanent
    assert "cannot send to this URL: ValueError" in outcome.error


def test_an_https_receiver_with_an_untrusted_certificate_is_not_posted_to(
    tls_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")

    outcome, _ = post(tls_receiver.url(), timeout=5)

    assert not outcome.delivered
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.error
    assert tls_receiver.requests == []
