"""The URL policy (SSRF): numeric normalisation, and the agent's check after DNS resolution.

The agent-side tests run a real aria2c and a canary listener on 127.0.0.1: a host name that
resolves (through an in-process resolver override, no real DNS) to a denied address must never
reach aria2, so the canary sees zero connections.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from worker_agent.downloads import Downloads
from worker_agent.journal import Journal
from worker_agent.reconcile import Assignment, reconcile
from worker_agent.reports import owes_started
from worker_agent.supervisor import Aria2Supervisor
from worker_agent.urlpolicy import (
    URL_DENIED_ERROR_CODE,
    PolicyError,
    UrlDenied,
    UrlPolicy,
    parse_inet_aton,
)

from .conftest import wait_until

STRICT = UrlPolicy(allow_loopback=False, allow_private=False)

# Every form names loopback or the metadata service; all must be refused by a strict policy.
SSRF_CORPUS = [
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.0.0.1./",
    "http://%31%32%37.0.0.1/",
    "http://１２７.０.０.１/",
    "http://0/",
    "http://0.0.0.0:8080/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://anything.localhost/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fc00::1]/",
    "http://user:pw@127.0.0.1:8000/",
    "ftp://127.0.0.1/file",
    "sftp://[::1]/file",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=http://169.254.169.254/a",
    "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=udp://127.1:6969",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "dict://127.0.0.1:11211/stat",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("uri", SSRF_CORPUS)
def test_the_strict_policy_refuses_every_ssrf_form(uri: str) -> None:
    with pytest.raises(UrlDenied):
        STRICT.check_uri(uri)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),
        ("4294967296", None),
    ],
)
def test_numeric_hosts_are_read_the_way_inet_aton_reads_them(
    host: str, expected: str | None
) -> None:
    address = parse_inet_aton(host)
    assert (str(address) if address else None) == expected
    if expected is not None:
        # The C library agrees: these are the addresses aria2 would connect to.
        assert socket.inet_ntoa(socket.inet_aton(host)) == expected


def test_metadata_addresses_are_refused_even_where_loopback_and_private_are_allowed() -> None:
    lenient = UrlPolicy()
    for uri in (
        "http://169.254.169.254/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
    ):
        with pytest.raises(UrlDenied, match="denied network"):
            lenient.check_uri(uri)
    lenient.check_uri("http://127.0.0.1:8000/file.bin")
    lenient.check_uri("http://192.168.1.10/file.bin")


def test_public_hosts_and_names_pass_the_static_check() -> None:
    for uri in (
        "https://example.com/a.iso",
        "http://93.184.216.34/",
        "ftp://ftp.debian.org/x",
        "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=udp://tracker.example:80",
    ):
        STRICT.check_uri(uri)


def test_the_policy_round_trips_through_json_and_refuses_bad_settings() -> None:
    policy = UrlPolicy(allowed_schemes=("https",), allow_loopback=False)
    assert UrlPolicy.from_dict(policy.to_dict()) == policy
    with pytest.raises(PolicyError, match="deny_networks"):
        UrlPolicy.from_dict({"deny_networks": ["not-a-network"]})
    with pytest.raises(PolicyError, match="allow_private"):
        UrlPolicy.from_dict({"allow_private": "no"})
    with pytest.raises(UrlDenied, match="scheme 'http'"):
        policy.check_uri("http://example.com/")


REAL_GETADDRINFO = socket.getaddrinfo


def fake_resolver(table: dict[str, str]) -> Any:
    """A `socket.getaddrinfo` that answers names from `table`, passes numeric hosts through
    (the agent's own RPC calls use them) and refuses any other name: no real DNS."""

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "not in the test's table") from None
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        address = table[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    return resolve


def test_a_name_resolving_to_a_denied_address_is_refused_after_resolution() -> None:
    resolver = fake_resolver({"metadata.test": "169.254.169.254", "inside.test": "10.0.0.7"})
    with pytest.raises(UrlDenied, match=r"metadata.test resolves to 169\.254\.169\.254"):
        UrlPolicy().check_resolved("http://metadata.test/latest", resolver=resolver)
    with pytest.raises(UrlDenied, match="private"):
        STRICT.check_resolved("http://inside.test/x", resolver=resolver)
    # Allowed where private ranges are; a name that does not resolve is left to aria2.
    UrlPolicy().check_resolved("http://inside.test/x", resolver=resolver)
    STRICT.check_resolved("http://nowhere.test/x", resolver=resolver)


class Canary:
    """A TCP listener on 127.0.0.1 that counts the connections it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def make_downloads(supervisor: Aria2Supervisor, policy: UrlPolicy) -> Downloads:
    downloads = Downloads(
        supervisor.rpc(), Journal(supervisor.state_dir / "journal"), supervisor.config.download_dir
    )
    downloads.url_policy = policy
    return downloads


def test_the_agent_refuses_a_name_that_resolves_to_a_denied_address_before_aria2_connects(
    supervisor: Aria2Supervisor, canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", fake_resolver({"canary.test": "127.0.0.1"}))
    downloads = make_downloads(supervisor, STRICT)
    uri = f"http://canary.test:{canary.port}/secret"
    outcome = reconcile(
        downloads,
        [Assignment(task_id=5, epoch=1, uris=[uri], options={})],
        fenced=False,
        finished=set(),
    )
    assert outcome.refused == [5]
    entry = downloads.journal.get(5)
    assert entry is not None and entry.phase == "failed"
    assert entry.error_code == URL_DENIED_ERROR_CODE
    assert "canary.test resolves to 127.0.0.1" in entry.error_message
    # Reported as failed straight away (never "started": aria2 never ran it).
    assert not owes_started(entry)
    assert downloads.rpc.poll().downloads == {}
    assert canary.connections == 0


def test_the_canary_does_see_aria2_when_the_policy_allows_loopback(
    supervisor: Aria2Supervisor, canary: Canary
) -> None:
    """The control for the test above: an allowed URL to the canary does reach it."""
    downloads = make_downloads(supervisor, UrlPolicy())
    uri = f"http://127.0.0.1:{canary.port}/file"
    reconcile(
        downloads,
        [Assignment(task_id=6, epoch=1, uris=[uri], options={"max-tries": "1"})],
        fenced=False,
        finished=set(),
    )
    wait_until(lambda: canary.connections > 0, timeout=10)


def test_the_agent_never_lets_a_task_fetch_its_own_aria2_rpc_port(
    supervisor: Aria2Supervisor,
) -> None:
    downloads = make_downloads(supervisor, UrlPolicy())
    for task_id, host in ((7, "127.0.0.1"), (8, "[::ffff:127.0.0.1]"), (9, "localhost")):
        uri = f"http://{host}:{supervisor.port}/jsonrpc?method=aria2.shutdown"
        reconcile(
            downloads,
            [Assignment(task_id=task_id, epoch=1, uris=[uri], options={})],
            fenced=False,
            finished=set(),
        )
        entry = downloads.journal.get(task_id)
        assert entry is not None and entry.error_code == URL_DENIED_ERROR_CODE
        assert "aria2 RPC" in entry.error_message
    assert downloads.rpc.poll().downloads == {}


def test_a_denied_tracker_option_is_refused_by_the_agent(supervisor: Aria2Supervisor) -> None:
    downloads = make_downloads(supervisor, UrlPolicy())
    magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"
    reconcile(
        downloads,
        [
            Assignment(
                task_id=10,
                epoch=1,
                uris=[magnet],
                kind="magnet",
                options={"bt-tracker": "http://169.254.169.254/announce"},
            )
        ],
        fenced=False,
        finished=set(),
    )
    entry = downloads.journal.get(10)
    assert entry is not None and entry.error_code == URL_DENIED_ERROR_CODE
    assert "169.254.0.0/16" in entry.error_message


def test_the_agent_adopts_the_policy_the_dispatcher_sends_at_registration(make_config) -> None:
    from worker_agent.agent import Agent

    agent = Agent(make_config(aria2={"spawn": False}))
    agent._adopt_url_policy(STRICT.to_dict())
    assert agent.downloads.url_policy == STRICT
    # A malformed policy is ignored, the current one stays.
    agent._adopt_url_policy({"deny_networks": ["nonsense"]})
    assert agent.downloads.url_policy == STRICT
    agent.executor.shutdown()
