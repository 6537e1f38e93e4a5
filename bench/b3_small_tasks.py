"""B3 — many small tasks: 1,000 × 100 KB submitted in one batch, vs bare ``aria2c -i``.

Same setup and method as B2 (bench/b2_dataplane.py): a dispatcher (SQLite), two agents with 5
slots each, nginx serving the files, rounds alternating bare ``aria2c -i -j 10`` and the cluster
(one ``POST /api/v1/tasks/batch/`` of 1,000 tasks, timed to the last ``finished_at``), every file
verified by sha256. Reports tasks completed per second and the ratio to aria2c.

Target: ≥ 100 tasks completed per second.

Usage: python -m bench.b3_small_tasks [--small] [--files 1000] [--size 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse

from bench.b2_dataplane import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="200 files, 1 round")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the last cluster round")
    args = parser.parse_args()
    compare(
        name="b3_small_tasks",
        small=args.small,
        files=args.files or (200 if args.small else 1000),
        size=args.size,
        rounds=args.rounds or (1 if args.small else 2),
        target_rate=100.0,
        profile=args.profile,
    )


if __name__ == "__main__":
    main()
