from __future__ import annotations

import os
import stat

import pytest

from worker_agent.aria2_rpc import Aria2Refused, Aria2Rpc
from worker_agent.supervisor import Aria2Supervisor, find_aria2c

from .conftest import wait_until


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if int(port_hex, 16) == port and fields[3] == "0A":
                    found.add(address)
    return found


def test_aria2c_is_found_even_without_a_configured_path():
    assert os.access(find_aria2c(None), os.X_OK)


def test_aria2c_listens_on_loopback_only_with_the_secret_in_a_private_file(supervisor):
    state_dir = supervisor.state_dir
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(supervisor.conf_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(supervisor.session_path.stat().st_mode) == 0o600
    assert supervisor.conf_path.read_text() == f"rpc-secret={supervisor.secret}\n"
    assert not any(supervisor.secret in arg for arg in supervisor.command())
    addresses = _listening_addresses(supervisor.port)
    loopback = {"0100007F", "00000000000000000000000001000000"}
    assert addresses and addresses <= loopback
    assert supervisor.rpc().get_version()


def test_rpc_without_the_secret_is_refused(supervisor):
    intruder = Aria2Rpc("127.0.0.1", supervisor.port, "wrong", retries=0)
    with pytest.raises(Aria2Refused, match="Unauthorized"):
        intruder.get_version()


def test_killed_aria2c_is_restarted_with_a_new_session_id(supervisor: Aria2Supervisor):
    before = supervisor.rpc().session_id()
    assert supervisor.process is not None
    supervisor.process.kill()
    supervisor.process.wait()
    assert wait_until(supervisor.ensure_running, timeout=5)
    assert supervisor.alive()
    assert supervisor.restarts == 1
    assert supervisor.rpc().session_id() != before


def test_stop_terminates_aria2c(make_config):
    sup = Aria2Supervisor(make_config())
    sup.start()
    process = sup.process
    assert process is not None
    sup.stop()
    assert process.poll() is not None
    assert not sup.ensure_running()


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _sockets_of(pid: int) -> list[tuple[str, str, int, str]]:
    """(table, local address hex, port, state) of every inet socket the process holds."""
    inodes = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/net/{table}") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    address, port_hex = fields[1].rsplit(":", 1)
                    found.append((table, address, int(port_hex, 16), fields[3]))
    return found


def test_aria2c_opens_no_port_but_its_loopback_rpc_and_no_udp_dht(supervisor):
    # Exercise it a little first: a paused download and a session save.
    rpc = supervisor.rpc()
    rpc.call("aria2.addUri", ["http://127.0.0.1:9/x"], {"pause": "true"})
    rpc.call("aria2.saveSession")
    assert supervisor.process is not None
    sockets = _sockets_of(supervisor.process.pid)
    listening = [s for s in sockets if s[0].startswith("tcp") and s[3] == "0A"]
    loopback = {"0100007F", "00000000000000000000000001000000"}
    assert listening and all(s[1] in loopback and s[2] == supervisor.port for s in listening)
    assert not [s for s in sockets if s[0].startswith("udp")], "DHT/LPD would listen on UDP"
    command = " ".join(supervisor.command())
    for flag in (
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--no-netrc=true",
        "--seed-time=0",
        "--rpc-listen-all=false",
    ):
        assert flag in command


def test_the_session_file_stays_owner_only_after_aria2c_rewrites_it(supervisor):
    supervisor.rpc().call("aria2.addUri", ["http://127.0.0.1:9/x"], {"pause": "true"})
    supervisor.rpc().call("aria2.saveSession")

    assert stat.S_IMODE(supervisor.session_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(supervisor.state_dir.stat().st_mode) == 0o700


def test_a_worker_without_bittorrent_never_follows_a_downloaded_torrent(make_config):
    config = make_config(worker={"capabilities": {"supports_bt": False}})

    command = Aria2Supervisor(config).command()

    assert "--follow-torrent=false" in command
