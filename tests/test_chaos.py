"""A short chaos soak (bench/chaos.py) in every test run: nothing lost, nothing completed twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.chaos import run

pytestmark = pytest.mark.e2e


def test_short_chaos_soak_loses_nothing_and_completes_nothing_twice(tmp_path: Path) -> None:
    seed = int(os.environ.get("ARIACLUSTER_CHAOS_SEED", "7"))
    report = run(tmp_path, seconds=45, seed=seed)
    print(report)
    assert report["tasks"] >= 20, report
    assert sum(report["nemesis_actions"].values()) >= 5, report
    assert report["lost"] == [], report
    assert report["duplicated_completions"] == [], report
    assert report["wrong_outcome"] == [], report
    assert report["bad_bytes"] == [], report
