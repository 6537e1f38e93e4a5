"""B2 — data plane: 20 × 50 MB over a 2-worker cluster vs bare ``aria2c -i``, same run.

Starts a dispatcher (SQLite), two agents (5 slots each) with their own aria2c, and nginx (falling
back to the Python Range server) serving generated files from 127.0.0.1. Rounds alternate: bare
``aria2c -i urls -j 10`` (same total concurrency as 2 workers × 5 slots, same per-download aria2
defaults as the agents), then the cluster (one ``POST /api/v1/tasks/batch/``, timed from just
before the POST to the last ``finished_at`` the dispatcher records). Every file of every round is
verified by sha256 and deleted before the next round. The result is the ratio of the medians.

Target: cluster time ≤ 1.1 × aria2c time.

Usage: python -m bench.b2_dataplane [--small] [--files 20] [--size 50000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Profiler,
    Run,
    aria2c_fetch,
    cluster,
    dispatcher_pid,
    make_files,
    nginx,
    parse_ts,
    table,
    verify_files,
    wait_all_done,
)


def cluster_round(running: Any, urls: dict[str, str], digests: dict[str, str]) -> dict[str, Any]:
    """Submit every URL in one batch; wait; verify every file; delete them. Seconds + counts."""
    api = running.api
    before = api.get("/api/v1/status/")["tasks"]
    done_before = before.get("completed", 0) + before.get("failed", 0)
    names = list(urls)
    submitted = time.time()
    created = []
    for start in range(0, len(names), 1000):
        chunk = names[start : start + 1000]
        created += api.post("/api/v1/tasks/batch/", {"tasks": [{"url": urls[n]} for n in chunk]})[
            "tasks"
        ]
    posted = time.time() - submitted
    wait_all_done(api, done_before + len(names), timeout=600)
    wall = time.time() - submitted
    by_id = {t["id"]: name for t, name in zip(created, names, strict=True)}
    finished: list[float] = []
    phases: dict[str, list[float]] = {"queue": [], "to_started": [], "to_finished": []}
    paths: dict[str, Path] = {}
    wanted = set(by_id)
    page = 1
    while wanted:
        answer = api.get(f"/api/v1/tasks/?page_size=500&page={page}&status=completed,failed")
        for task in answer["results"]:
            if task["id"] in wanted:
                wanted.discard(task["id"])
                assert task["status"] == "completed", task
                finished.append(parse_ts(task["finished_at"]))
                assigned, started = parse_ts(task["assigned_at"]), parse_ts(task["started_at"])
                phases["queue"].append(assigned - parse_ts(task["created_at"]))
                phases["to_started"].append(started - assigned)
                phases["to_finished"].append(finished[-1] - started)
                paths[by_id[task["id"]]] = running.downloaded_path(task)
        if not answer.get("next"):
            break
        page += 1
    assert not wanted, f"tasks not found: {sorted(wanted)[:5]}"
    verified = verify_files(paths, digests)
    for path in paths.values():
        shutil.rmtree(path.parent, ignore_errors=True)
    return {
        "seconds": round(max(finished) - submitted, 3),
        "wall_seconds": round(wall, 3),
        "post_seconds": round(posted, 3),
        "verified_bytes": verified,
        # Where a task's time goes (medians, ms): waiting for a slot, assigned -> agent's
        # "started" report, started -> the dispatcher records completion (download + hash +
        # completion noticed + reported).
        "phase_p50_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in phases.items()},
    }


def baseline_round(
    base: Path, urls: dict[str, str], digests: dict[str, str], concurrency: int
) -> dict[str, Any]:
    out = base / "baseline"
    shutil.rmtree(out, ignore_errors=True)
    seconds = aria2c_fetch(list(urls.values()), out, concurrency)
    verified = verify_files({n: out / n for n in urls}, digests)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": round(seconds, 3), "verified_bytes": verified}


def compare(
    *,
    name: str,
    small: bool,
    files: int,
    size: int,
    rounds: int,
    slots: int = 5,
    target_ratio: float | None = None,
    target_rate: float | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    """Interleaved aria2c / cluster rounds over the same files; prints and writes the result."""
    run = Run(name + ("-profiled" if profile else ""), small)
    results: dict[str, list[dict[str, Any]]] = {"aria2c": [], "cluster": []}
    profiles: dict[str, Any] = {}
    options = {f"w{i}": {"max_tasks": slots} for i in (1, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with cluster(base, agent_options=options) as running:
            root = running.server.root
            started = time.monotonic()
            digests = make_files(root, "f", files, size)
            print(f"generated {files} x {size} bytes in {time.monotonic() - started:.1f} s")
            with nginx(root) as origin:
                urls = {n: f"{origin}/{n}" for n in digests}
                for index in range(rounds):
                    results["aria2c"].append(baseline_round(base, urls, digests, 2 * slots))
                    profilers = []
                    if profile and index == rounds - 1:
                        profilers = [
                            (who, Profiler(pid, f"{run.name}-{who}"))
                            for who, pid in [
                                ("dispatcher", dispatcher_pid(running)),
                                *((n, p.pid) for n, p in running.local.agents.items()),
                            ]
                        ]
                    results["cluster"].append(cluster_round(running, urls, digests))
                    for who, profiler in profilers:
                        hot = profiler.stop()
                        profiles[who] = hot
                        print(f"profile of {who} (inclusive % of busy samples):")
                        for frame, share in hot[:15]:
                            print(f"  {share:5.1f}%  {frame}")
                    print(
                        f"round {index + 1}: aria2c {results['aria2c'][-1]['seconds']:.2f} s, "
                        f"cluster {results['cluster'][-1]['seconds']:.2f} s "
                        f"(per-task p50 ms {results['cluster'][-1]['phase_p50_ms']})"
                    )
    aria = statistics.median(r["seconds"] for r in results["aria2c"])
    mine = statistics.median(r["seconds"] for r in results["cluster"])
    ratio = round(mine / aria, 3)
    pairs = [
        round(c["seconds"] / a["seconds"], 3)
        for a, c in zip(results["aria2c"], results["cluster"], strict=True)
    ]
    figures: dict[str, Any] = {
        "files": files,
        "size": size,
        "workers": 2,
        "slots_per_worker": slots,
        "aria2c_concurrency": 2 * slots,
        "rounds": rounds,
        "aria2c_median_s": aria,
        "cluster_median_s": mine,
        "ratio_cluster_over_aria2c": ratio,
        "ratio_per_round": pairs,
        "cluster_tasks_per_s": round(files / mine, 1),
        "aria2c_files_per_s": round(files / aria, 1),
        "rounds_detail": results,
        "verified_sha256_files": files * rounds * 2,
    }
    met = True
    if target_ratio is not None:
        met = ratio <= target_ratio
    if target_rate is not None:
        met = met and files / mine >= target_rate
    figures["target_met"] = met
    if profiles:
        figures["profile_top"] = profiles
    print(f"\n{name}: {files} x {size} bytes, 2 workers x {slots} slots vs aria2c -j {2 * slots}")
    table(
        ["", "median s", "files/s", "rounds s"],
        [
            [
                "aria2c -i",
                aria,
                figures["aria2c_files_per_s"],
                [r["seconds"] for r in results["aria2c"]],
            ],
            [
                "cluster",
                mine,
                figures["cluster_tasks_per_s"],
                [r["seconds"] for r in results["cluster"]],
            ],
            ["ratio", ratio, "", pairs],
        ],
    )
    run.write(figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20 x 5 MB, 2 rounds")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the last cluster round")
    args = parser.parse_args()
    compare(
        name="b2_dataplane",
        small=args.small,
        files=args.files,
        size=args.size or (5_000_000 if args.small else 50_000_000),
        rounds=args.rounds or (2 if args.small else 3),
        target_ratio=1.1,
        profile=args.profile,
    )


if __name__ == "__main__":
    main()
