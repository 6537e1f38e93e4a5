"""Metrics kept in this dispatcher process's memory (not derived from the database).

Most of `/metrics` is read from the database at scrape time, so every process answers the same.
What only exists as an event in one process — how long a task waited before placement, how long
a placement pass took — is recorded here with prometheus_client and exposed by the process that
answers the scrape. With several dispatcher processes, scrape each one (or sum by instance).
No Django imports: placement and the agent-facing code import this freely.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# From when a task became due (created, re-queued or its retry delay ended) to its assignment.
PLACEMENT_WAIT = Histogram(
    "ariacluster_placement_wait_seconds",
    "Time a due pending task waited before this process assigned it to a worker.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
    registry=None,
)

PLACEMENT_PASS = Histogram(
    "ariacluster_placement_pass_seconds",
    "Duration of one placement pass (every round until no free slot or no due task).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=None,
)

AGENT_REPORTS = Counter(
    "ariacluster_agent_reports",
    "Agent API calls this process answered, by kind (heartbeat, progress, started, ...).",
    labelnames=["kind"],
    registry=None,
)

PROCESS_COLLECTORS = (PLACEMENT_WAIT, PLACEMENT_PASS, AGENT_REPORTS)
