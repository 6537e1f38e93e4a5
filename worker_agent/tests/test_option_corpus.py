"""The per-task option allowlist against aria2c's own option list, and what aria2 really takes.

Every option aria2c knows that is not on the allowlist is refused by name; ``out`` never leaves
the task folder; the values the dispatcher stores (numbers converted to strings) are the ones
``aria2.getOption`` shows on a real aria2c.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from worker_agent.options import ALLOWED_TASK_OPTIONS, OptionError, validate_task_options
from worker_agent.supervisor import Aria2Supervisor, find_aria2c


def aria2_option_names() -> list[str]:
    """Every option name aria2c lists in ``--help=#all``."""
    out = subprocess.run(
        [str(find_aria2c(None)), "--help=#all"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(set(re.findall(r"^ (?:-[A-Za-z0-9], )?--([a-z0-9-]+)", out, re.MULTILINE)))


def test_aria2c_lists_every_allowed_option() -> None:
    names = aria2_option_names()
    assert len(names) > 100
    assert ALLOWED_TASK_OPTIONS <= set(names)


def test_every_aria2_option_outside_the_allowlist_is_refused_by_name() -> None:
    refused = []
    for name in aria2_option_names():
        if name in ALLOWED_TASK_OPTIONS:
            continue
        with pytest.raises(OptionError) as info:
            validate_task_options({name: "1"})
        assert info.value.option == name and name in str(info.value)
        refused.append(name)
    for owned in ("dir", "gid", "index-out", "allow-overwrite", "log", "save-session"):
        assert owned in refused
    assert "all-proxy" in refused and "rpc-secret" in refused and "on-download-complete" in refused


@pytest.mark.parametrize(
    "out",
    [
        "../x",
        "../../etc/passwd",
        "a/../../b",
        "/abs",
        "..",
        ".",
        "sub/file",
        "a\\..\\b",
        "..\\x",
        "x/",
        "x\x00y",
        "a" * 256,
    ],
)
def test_out_traversal_attempts_are_refused(out: str) -> None:
    with pytest.raises(OptionError) as info:
        validate_task_options({"out": out})
    assert info.value.option == "out"


def test_values_reach_aria2_as_the_strings_it_shows_in_get_option(
    supervisor: Aria2Supervisor, tmp_path: Path
) -> None:
    options = validate_task_options(
        {
            "split": "4",
            "max-connection-per-server": "3",
            "min-split-size": "2M",
            "max-download-limit": "512K",
            "seed-time": "1.5",
            "seed-ratio": "0.5",
            "max-tries": "2",
            "timeout": "7",
            "user-agent": "ariacluster-test",
            "out": "renamed.bin",
            "checksum": "sha-256=" + "ab" * 32,
            "header": ["X-One: 1", "X-Two: 2"],
        }
    )
    rpc = supervisor.rpc()
    gid = rpc.add_uri(
        ["http://127.0.0.1:9/never"],
        {**options, "pause": "true", "dir": str(tmp_path), "gid": "00000000000a0001"},
    )

    taken = rpc.get_option(gid)

    assert taken["split"] == "4" and taken["max-connection-per-server"] == "3"
    assert taken["min-split-size"] == "2097152"
    assert taken["max-download-limit"] == "524288"
    assert taken["seed-time"] == "1.5" and taken["seed-ratio"] == "0.5"
    assert taken["max-tries"] == "2" and taken["timeout"] == "7"
    assert taken["user-agent"] == "ariacluster-test" and taken["out"] == "renamed.bin"
    assert taken["checksum"] == "sha-256=" + "ab" * 32
    assert "X-One: 1" in taken["header"] and "X-Two: 2" in taken["header"]


def test_a_non_string_value_would_be_silently_ignored_so_it_is_refused(
    supervisor: Aria2Supervisor, tmp_path: Path
) -> None:
    rpc = supervisor.rpc()
    gid = rpc.add_uri(
        ["http://127.0.0.1:9/never"],
        {"split": 7, "pause": "true", "dir": str(tmp_path), "gid": "00000000000b0001"},
    )
    assert rpc.get_option(gid)["split"] != "7"
    with pytest.raises(OptionError, match="string"):
        validate_task_options({"split": 7})
