"""`run_dispatcher` and `run_cluster` are the same commands as `serve` and `runcluster`."""

from __future__ import annotations

from django.core.management import load_command_class

from dispatcher.management.commands import runcluster, serve


def test_run_dispatcher_is_serve_under_another_name() -> None:
    command = load_command_class("dispatcher", "run_dispatcher")

    assert isinstance(command, serve.Command)
    assert type(command).handle is serve.Command.handle


def test_run_cluster_is_runcluster_under_another_name() -> None:
    command = load_command_class("dispatcher", "run_cluster")

    assert isinstance(command, runcluster.Command)
    assert type(command).handle is runcluster.Command.handle
