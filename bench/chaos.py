"""Chaos soak: a local cluster downloads many tasks while a nemesis kills and stalls its parts.

1 dispatcher + 3 agents (real aria2c) + a Range HTTP server on 127.0.0.1. For the given time the
loop submits waves of mixed tasks (sizes 50 kB–4 MB, some throttled, some missing files, some
flaky sources) and, between waves, the nemesis does one of: SIGKILL an agent (restarted a moment
later), SIGSTOP an agent for a few seconds, SIGKILL an agent's aria2c, SIGKILL the dispatcher
(restarted a moment later). Then everything is healed and the history is checked:

- lost: tasks not in a final state after the settle time — must be 0;
- duplicated completions: tasks with more than one accepted `completed` event — must be 0;
- wrong outcome: a present file not completed, or a missing one not failed — must be 0;
- bad bytes: a completed file whose bytes on the worker's disk differ from the source — must be 0.

Usage: python -m bench.chaos [--minutes 5] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.e2e import ApiError, Cluster, running_cluster
from tests.support.procs import aria2c_of
from tests.support.rangeserver import sha256_of

AGENTS = ("w1", "w2", "w3")
FINAL = {"completed", "failed", "canceled"}


@dataclass
class Soak:
    cluster: Cluster
    rng: random.Random
    expected: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (outcome, name)
    actions: Counter[str] = field(default_factory=Counter)
    stopped: dict[str, float] = field(default_factory=dict)
    dead: dict[str, float] = field(default_factory=dict)

    def submit_wave(self, index: int) -> None:
        for n in range(self.rng.randint(2, 5)):
            name = f"c{index}-{n}.bin"
            roll = self.rng.random()
            if roll < 0.1:
                url, outcome = self.cluster.server.url(f"missing-{index}-{n}.bin"), "failed"
            else:
                size = self.rng.choice([50_000, 300_000, 1_000_000, 4_000_000])
                url, outcome = self.cluster.add_file(name, size), "completed"
                if roll < 0.25:
                    url += "?throttle=800000"
                elif roll < 0.35:
                    self.cluster.server.set_flaky(name, failures=1, mode="drop")
            try:
                task = self.cluster.api.post("/api/tasks", {"url": url})
            except (ApiError, OSError):
                continue  # dispatcher down right now: the client saw the error, nothing owed
            self.expected[task["id"]] = (outcome, name)

    def nemesis(self) -> None:
        local = self.cluster.local
        action = self.rng.choice(["kill_agent", "stop_agent", "kill_aria2c", "kill_dispatcher"])
        name = self.rng.choice(
            [a for a in AGENTS if a not in self.dead and a not in self.stopped] or [AGENTS[0]]
        )
        if action == "kill_agent" and name not in self.dead:
            local.agents[name].send_signal(signal.SIGKILL)
            local.agents[name].wait()
            self.dead[name] = time.monotonic() + self.rng.uniform(0.5, 3)
        elif action == "stop_agent" and name not in self.dead:
            local.agents[name].send_signal(signal.SIGSTOP)
            self.stopped[name] = time.monotonic() + self.rng.uniform(1, 9)
        elif action == "kill_aria2c" and name not in self.dead and name not in self.stopped:
            pid = aria2c_of(local.agents[name].pid)
            if pid is None:
                return  # between an aria2c crash and its restart
            os.kill(pid, signal.SIGKILL)
        elif action == "kill_dispatcher":
            (process,) = local.dispatchers
            process.send_signal(signal.SIGKILL)
            process.wait()
            local.dispatchers.clear()
            time.sleep(self.rng.uniform(0.5, 2))
            local.start_dispatcher()
        else:
            return
        self.actions[action] += 1

    def heal(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        for name, until in list(self.stopped.items()):
            if everything or now >= until:
                self.cluster.local.agents[name].send_signal(signal.SIGCONT)
                del self.stopped[name]
        for name, until in list(self.dead.items()):
            if everything or now >= until:
                self.cluster.start_agent(name)
                del self.dead[name]


def check(soak: Soak, settle: float) -> dict[str, Any]:
    api = soak.cluster.api
    deadline = time.monotonic() + settle
    tasks: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        tasks = {i: api.task(i) for i in soak.expected}
        if all(t["status"] in FINAL for t in tasks.values()):
            break
        time.sleep(1)
    lost = [i for i, t in tasks.items() if t["status"] not in FINAL]
    duplicated, wrong, bad_bytes = [], [], []
    for task_id, (outcome, name) in soak.expected.items():
        task = tasks[task_id]
        if task["status"] != outcome and task_id not in lost:
            wrong.append((task_id, task["status"], outcome, task["error_message"]))
        kinds = [e["kind"] for e in api.get(f"/api/v1/tasks/{task_id}/events/")]
        if kinds.count("completed") > 1:
            duplicated.append(task_id)
        if task["status"] == "completed":
            path = soak.cluster.downloaded_path(task)
            if not path.exists():
                bad_bytes.append((task_id, task["worker"], "missing"))
            elif sha256_of(path) != soak.cluster.files[name]:
                bad_bytes.append((task_id, task["worker"], "different bytes"))
    return {
        "tasks": len(soak.expected),
        "completed": sum(1 for t in tasks.values() if t["status"] == "completed"),
        "failed_as_expected": sum(
            1
            for i, t in tasks.items()
            if t["status"] == "failed" and soak.expected[i][0] == "failed"
        ),
        "lost": lost,
        "duplicated_completions": duplicated,
        "wrong_outcome": wrong,
        "bad_bytes": bad_bytes,
        "nemesis_actions": dict(soak.actions),
    }


def run(base: Path, *, seconds: float, seed: int, settle: float = 90.0) -> dict[str, Any]:
    config = {
        # The nemesis kills workers every few seconds: a task may lose several leases without
        # being a poison task, so the poison bound (tested on its own) is out of the way here.
        "task_assignment": {"retry_delay": 1, "max_retries": 5, "max_lease_losses": 1000},
        "worker_management": {"heartbeat_interval": 1, "heartbeat_timeout": 4},
    }
    with running_cluster(base, workers=len(AGENTS), config=config) as cluster:
        soak = Soak(cluster, random.Random(seed))
        started = time.monotonic()
        wave = 0
        while time.monotonic() - started < seconds:
            soak.heal()
            soak.submit_wave(wave)
            wave += 1
            time.sleep(soak.rng.uniform(0.5, 2.0))
            soak.heal()
            soak.nemesis()
            time.sleep(soak.rng.uniform(1.0, 3.0))
        soak.heal(everything=True)
        report = check(soak, settle)
        report["seconds"] = round(time.monotonic() - started, 1)
        report["seed"] = seed
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run(Path(tmp), seconds=args.minutes * 60, seed=args.seed)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failures = report["lost"] or report["duplicated_completions"] or report["wrong_outcome"]
    raise SystemExit(1 if failures or report["bad_bytes"] else 0)


if __name__ == "__main__":
    main()
