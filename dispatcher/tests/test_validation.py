"""What users may submit: URIs, per-task aria2 options, priority, tags, name."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from dispatcher.models import Priority, TaskKind
from dispatcher.validation import MAX_URIS, parse_priority, validate_task_input

MAGNET = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=ubuntu.iso"


def errors_of(**fields: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        validate_task_input(**fields)
    return excinfo.value.message_dict


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/file.iso",
        "https://example.com/a/b.tar.gz?x=1",
        "ftp://ftp.example.com/pub/file",
        "sftp://user@host.example.com/file",
        "HTTP://EXAMPLE.COM/upper",
    ],
)
def test_http_https_ftp_and_sftp_urls_are_accepted(url: str) -> None:
    data = validate_task_input(url=url)

    assert data.uris == [url]
    assert data.kind == TaskKind.URI


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "javascript:alert(1)", "gopher://host/x", "example.com/file", "data:,x"],
)
def test_other_schemes_are_refused(url: str) -> None:
    assert "is not allowed" in errors_of(url=url)["url"][0]


def test_a_url_without_a_host_is_refused() -> None:
    assert "has no host" in errors_of(url="http:///path/only")["url"][0]


@pytest.mark.parametrize(
    "url", ["http://example.com/a\nb", "http://example.com/a b", "http://example.com/\x00", "\x7f"]
)
def test_control_characters_and_spaces_inside_a_url_are_refused(url: str) -> None:
    assert errors_of(url=url)["url"]


def test_a_magnet_link_is_accepted_and_named_after_its_dn() -> None:
    data = validate_task_input(url=MAGNET)

    assert data.kind == TaskKind.MAGNET
    assert data.name == "ubuntu.iso"


def test_a_magnet_link_without_xt_is_refused() -> None:
    assert "xt" in errors_of(url="magnet:?dn=thing")["url"][0]


def test_a_magnet_link_cannot_be_mixed_with_mirrors() -> None:
    messages = errors_of(uris=[MAGNET, "http://example.com/ubuntu.iso"])["uris"]

    assert any("cannot be mixed" in m for m in messages)


def test_mirrors_are_kept_in_order_without_duplicates() -> None:
    data = validate_task_input(
        uris=["http://a.example/f.iso", "http://b.example/f.iso", "http://a.example/f.iso"]
    )

    assert data.uris == ["http://a.example/f.iso", "http://b.example/f.iso"]
    assert data.name == "f.iso"


def test_more_than_the_maximum_of_mirrors_is_refused() -> None:
    uris = [f"http://m{i}.example/f.iso" for i in range(MAX_URIS + 1)]

    assert any("at most" in m for m in errors_of(uris=uris)["uris"])


def test_exactly_the_maximum_of_mirrors_is_accepted() -> None:
    uris = [f"http://m{i}.example/f.iso" for i in range(MAX_URIS)]

    assert len(validate_task_input(uris=uris).uris) == MAX_URIS


def test_no_url_at_all_is_refused() -> None:
    assert "url" in errors_of()


def test_uris_that_is_not_a_list_is_refused() -> None:
    assert "uris" in errors_of(uris="http://example.com/f")


def test_a_bad_mirror_is_reported_under_uris() -> None:
    errors = errors_of(url="http://example.com/ok", uris=["ftp://ok.example/f", "file:///x"])

    assert "url" not in errors
    assert "file:///x" in errors["uris"][0]


def test_every_field_problem_is_reported_at_once() -> None:
    errors = errors_of(url="file:///x", options={"dir": "/"}, priority=9, tags=["bad tag"])

    assert set(errors) == {"url", "options", "priority", "tags"}


def test_allowlisted_options_are_kept_and_numbers_become_strings() -> None:
    data = validate_task_input(
        url="http://example.com/f",
        options={"split": 4, "max-connection-per-server": "8", "max-tries": 5, "out": "x.bin"},
    )

    assert data.options == {
        "split": "4",
        "max-connection-per-server": "8",
        "max-tries": "5",
        "out": "x.bin",
    }
    assert data.name == "x.bin"


@pytest.mark.parametrize(
    "options",
    [
        {"dir": "/tmp"},
        {"gid": "0000000000000001"},
        {"log": "/tmp/log"},
        {"all-proxy": "http://proxy:3128"},
        {"save-session": "/tmp/s"},
        {"out": "../escape.bin"},
        {"out": "sub/dir.bin"},
        {"out": "/etc/passwd"},
        {"out": ".."},
        {"out": "a\nb"},
        {"header": "X-A: 1\r\nX-B: 2"},
        {"split": "0"},
        {"split": "many"},
        {"split": True},
    ],
)
def test_options_outside_the_allowlist_or_unsafe_are_refused(options: dict[str, Any]) -> None:
    assert errors_of(url="http://example.com/f", options=options)["options"]


def test_options_that_are_not_an_object_are_refused() -> None:
    assert errors_of(url="http://example.com/f", options=["split", "4"])["options"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, Priority.NORMAL),
        ("", Priority.NORMAL),
        (1, Priority.LOW),
        (4, Priority.URGENT),
        ("3", Priority.HIGH),
        ("low", Priority.LOW),
        ("Normal", Priority.NORMAL),
        (" high ", Priority.HIGH),
        ("urgent", Priority.URGENT),
    ],
)
def test_priority_accepts_1_to_4_and_the_names(given: Any, expected: int) -> None:
    assert parse_priority(given) == expected


@pytest.mark.parametrize("given", [0, 5, -1, "5", "highest", True, 2.0, [2]])
def test_priority_outside_1_to_4_is_refused(given: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_priority(given)
    assert "priority" in excinfo.value.message_dict


def test_tags_are_deduplicated_and_may_be_a_comma_separated_string() -> None:
    assert validate_task_input(url="http://e.x/f", tags="site=home, ssd ssd").tags == [
        "site=home",
        "ssd",
    ]
    assert validate_task_input(url="http://e.x/f", tags=["a", "a", "b"]).tags == ["a", "b"]


@pytest.mark.parametrize(
    "tags", [["has space"], ["x" * 65], [5], "", [f"t{i}" for i in range(21)], {"a": 1}]
)
def test_bad_tags_are_refused(tags: Any) -> None:
    if tags == "":
        # An empty string means "no tags", not an error.
        assert validate_task_input(url="http://e.x/f", tags=tags).tags == []
        return
    assert errors_of(url="http://e.x/f", tags=tags)["tags"]


def test_a_name_with_control_characters_is_refused() -> None:
    assert errors_of(url="http://e.x/f", name="bad\nname")["name"]


def test_a_name_with_spaces_is_accepted() -> None:
    assert validate_task_input(url="http://e.x/f", name="my file.iso").name == "my file.iso"


def test_the_name_defaults_to_the_url_file_name() -> None:
    assert validate_task_input(url="http://e.x/dir/some%20file.iso").name == "some file.iso"
    assert validate_task_input(url="http://e.x/").name == "e.x"
