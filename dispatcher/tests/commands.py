"""Run a management command in-process and capture what it prints."""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO

from django.core.management import call_command


@dataclass
class Output:
    stdout: str
    stderr: str


def run_command(name: str, *args: str) -> Output:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return Output(out.getvalue(), err.getvalue())
