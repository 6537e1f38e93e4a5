"""Process helpers: children of a pid, liveness, and helper processes that answer in JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent.parent


class Helper:
    """``python -m <module> <args>`` started now; :meth:`finish` waits for its JSON answer.

    stderr goes to a file, not a pipe: tests start several helpers and collect them one after
    another, and a helper whose full stderr pipe blocked its logging while it held a database
    lock (SQLite's write lock) stalled the others until "database is locked".
    """

    def __init__(self, module: str, *args: str, env: dict[str, str]) -> None:
        self.log: IO[str] = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def finish(self, timeout: float = 90) -> tuple[Any, str]:
        """(the last stdout line as JSON, stderr); fails the test on a timeout or exit != 0."""
        import pytest

        args = self.process.args
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail(f"process {args} did not finish; stderr:\n{self.stderr()[-3000:]}")
        err = self.stderr()
        self.log.close()
        code = self.process.returncode
        assert code == 0, f"{args} exited {code}:\n{err[-3000:]}"
        return json.loads(out.strip().splitlines()[-1]), err


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid follows the closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def aria2c_of(agent_pid: int) -> int | None:
    """The aria2c child of an agent, or None (e.g. between a crash and its restart)."""
    for pid in children(agent_pid):
        try:
            if b"aria2c" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
