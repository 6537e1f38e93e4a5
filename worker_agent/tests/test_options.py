from __future__ import annotations

import pytest

from worker_agent.options import OptionError, validate_task_options


def test_allowed_options_pass_through_as_strings():
    options = {
        "split": "4",
        "max-connection-per-server": "16",
        "out": "file.bin",
        "checksum": "sha-256=" + "ab" * 32,
        "header": ["X-A: 1", "Cookie: a=b"],
        "max-download-limit": "1M",
    }
    assert validate_task_options(options) == options


@pytest.mark.parametrize("out", ["../x", "a/b", "..hidden", "..", "a\\b", "/etc/passwd", ""])
def test_out_with_a_directory_part_or_traversal_is_refused(out):
    with pytest.raises(OptionError) as info:
        validate_task_options({"out": out})
    assert info.value.option == "out"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x\x00", "y\x7f", "\x1b[0m"])
def test_control_characters_are_refused_in_any_value(value):
    with pytest.raises(OptionError, match="control character"):
        validate_task_options({"user-agent": value})


@pytest.mark.parametrize("value", [4, True, 1.5, None, ["4"]])
def test_non_string_values_are_refused(value):
    with pytest.raises(OptionError, match=r"'split'.*string"):
        validate_task_options({"split": value})


@pytest.mark.parametrize("name", ["dir", "gid", "log", "all-proxy", "rpc-secret", "x"])
def test_unknown_or_agent_owned_options_are_refused_by_name(name):
    with pytest.raises(OptionError) as info:
        validate_task_options({name: "1"})
    assert info.value.option == name
    assert name in str(info.value)


@pytest.mark.parametrize("value", ["0", "17", "-1", "4.5", "abc"])
def test_max_connection_per_server_must_be_1_to_16(value):
    with pytest.raises(OptionError, match="max-connection-per-server"):
        validate_task_options({"max-connection-per-server": value})


def test_header_list_items_are_checked_one_by_one():
    with pytest.raises(OptionError, match="control character"):
        validate_task_options({"header": ["X-A: 1", "X-B: 2\r\nX-Evil: 1"]})
