"""`import_urls`: aria2 input files become tasks, all or nothing, errors with line numbers."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dispatcher.input_file import InputFileError, parse_input_file
from dispatcher.models import Task, TaskKind
from dispatcher.tests.commands import run_command

pytestmark = pytest.mark.django_db

GOOD = """# two mirrors of one file, with options
https://a.example/f.iso\thttps://b.example/f.iso
  out=f.iso
  split=4

magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567
https://c.example/g.bin
"""


def test_each_uri_line_becomes_one_task_with_its_mirrors_and_options(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(GOOD)

    output = run_command("import_urls", str(path), "--tag", "batch1").stdout

    assert "Queued 3 download(s)" in output
    first, magnet, plain = Task.objects.order_by("pk")
    assert first.uris == ["https://a.example/f.iso", "https://b.example/f.iso"]
    assert first.options == {"out": "f.iso", "split": "4"}
    assert magnet.kind == TaskKind.MAGNET
    assert plain.uris == ["https://c.example/g.bin"]
    assert all(t.tags == ["batch1"] for t in (first, magnet, plain))


def test_one_invalid_entry_queues_nothing_and_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("https://ok.example/a\nfile:///etc/passwd\nhttps://ok.example/b\n  dir=/tmp\n")

    with pytest.raises(CommandError, match="2 invalid download"):
        run_command("import_urls", str(path))

    assert Task.objects.count() == 0


def test_error_lines_point_at_the_uri_line_of_the_bad_entry(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("https://ok.example/a\n\nftp:/nohost\n")
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("import_urls", str(path), stdout=StringIO(), stderr=err)

    assert f"{path}:3: " in err.getvalue()
    assert "has no host" in err.getvalue()


def test_a_malformed_option_line_is_reported_before_anything_is_validated(
    tmp_path: Path,
) -> None:
    with pytest.raises(InputFileError) as info:
        parse_input_file("  split=4\nhttps://a.example/f\n  nonsense\n")

    assert info.value.errors == [
        (1, "an option line comes before any URI line"),
        (3, "expected option=value, got 'nonsense'"),
    ]


def test_dry_run_validates_but_queues_nothing(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text(GOOD)

    output = run_command("import_urls", str(path), "--dry-run").stdout

    assert "All 3 download(s) are valid" in output
    assert Task.objects.count() == 0


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# nothing\n\n")

    with pytest.raises(CommandError, match="no URIs found"):
        run_command("import_urls", str(path))
