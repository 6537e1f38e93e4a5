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
