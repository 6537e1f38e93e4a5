"""Thin wrapper over aria2p's low-level ``Client``: short timeouts, retries, typed results.

Contract: every method either returns aria2's answer, raises :class:`Aria2Refused` (aria2
answered with an error, e.g. unknown GID) or raises :class:`Aria2Unavailable` (no answer after
the retries: aria2c is down, restarting or stalled). aria2 values are strings; keys that do not
apply are absent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aria2p
import requests

POLL_KEYS = [
    "gid",
    "status",
    "totalLength",
    "completedLength",
    "downloadSpeed",
    "uploadSpeed",
    "connections",
    "errorCode",
    "errorMessage",
    "followedBy",
    "following",
    "belongsTo",
    "dir",
    "seeder",
    "uploadLength",
]
_LIST_LIMIT = 10000


class Aria2Unavailable(RuntimeError):
    """aria2c did not answer (connection refused, timeout, garbage)."""


class Aria2Refused(RuntimeError):
    """aria2c answered with an error; ``code`` and ``message`` are aria2's."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"aria2 error {code}: {message}")
        self.code = code
        self.message = message

    @property
    def gid_not_found(self) -> bool:
        return "not found" in self.message.lower()


class _SessionClient(aria2p.Client):
    """aria2p's Client with keep-alive connections and a configurable RPC path."""

    def __init__(self, host: str, port: int, secret: str, timeout: float, rpc_path: str) -> None:
        super().__init__(host=host, port=port, secret=secret, timeout=timeout)
        self.rpc_path = rpc_path
        self.http = requests.Session()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}{self.rpc_path}"

    def post(self, payload: str) -> dict[str, Any]:
        response = self.http.post(self.server, data=payload, timeout=self.timeout)
        result: dict[str, Any] = response.json()
        return result


@dataclass
class PollResult:
    """One ``system.multicall`` snapshot: aria2's session id and every download it knows."""

    session_id: str
    downloads: dict[str, dict[str, Any]] = field(default_factory=dict)


class Aria2Rpc:
    """JSON-RPC access to one aria2c on loopback."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        *,
        rpc_path: str = "/jsonrpc",
        timeout: float = 5.0,
        retries: int = 2,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self._client = _SessionClient(f"http://{host}", port, secret, timeout, rpc_path)

    @property
    def port(self) -> int:
        return int(self._client.port)

    def reconnect(self, port: int, secret: str) -> None:
        """Point at a (re)started aria2c."""
        self._client.port = port
        self._client.secret = secret
        self._client.http.close()
        self._client.http = requests.Session()

    def call(self, method: str, *params: Any, retries: int | None = None) -> Any:
        """Call ``method`` (e.g. ``aria2.tellStatus``) with the secret inserted."""
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            try:
                return self._client.call(method, list(params))
            except aria2p.ClientException as exc:
                raise Aria2Refused(int(exc.code), str(exc.message)) from exc
            except (requests.RequestException, ValueError) as exc:
                if attempt + 1 >= attempts:
                    raise Aria2Unavailable(f"{method}: {exc}") from exc
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def get_version(self) -> str:
        return str(self.call("aria2.getVersion")["version"])

    def session_id(self) -> str:
        return str(self.call("aria2.getSessionInfo")["sessionId"])

    def add_uri(self, uris: list[str], options: dict[str, Any]) -> str:
        """Add a download; ``options["gid"]`` chooses its GID. Never retried: not idempotent."""
        return str(self.call("aria2.addUri", uris, options, retries=0))

    def add_torrent(self, torrent_b64: str, uris: list[str], options: dict[str, Any]) -> str:
        return str(self.call("aria2.addTorrent", torrent_b64, uris, options, retries=0))

    def add_metalink(self, metalink_b64: str, options: dict[str, Any]) -> list[str]:
        """Add every file of a Metalink; aria2 returns one GID per file (no parent)."""
        result = self.call("aria2.addMetalink", metalink_b64, options, retries=0)
        return [str(gid) for gid in result]

    def change_option(self, gid: str, options: dict[str, Any]) -> bool:
        """Change per-download options; aria2 restarts an active download for non-live ones.

        False when aria2 refuses (unknown or finished GID).
        """
        try:
            self.call("aria2.changeOption", gid, options)
        except Aria2Refused:
            return False
        return True

    def get_option(self, gid: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("aria2.getOption", gid)
        return result

    def get_files_many(self, gids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """``aria2.getFiles`` of several GIDs in one multicall; unknown GIDs are left out."""
        if not gids:
            return {}
        calls = [{"methodName": "aria2.getFiles", "params": [gid]} for gid in gids]
        answers = self.call("system.multicall", calls)
        result: dict[str, list[dict[str, Any]]] = {}
        for gid, answer in zip(gids, answers, strict=False):
            if isinstance(answer, list) and answer and isinstance(answer[0], list):
                result[gid] = answer[0]
        return result

    def tell_status(self, gid: str, keys: Iterable[str] | None = None) -> dict[str, Any] | None:
        """Status of ``gid`` or None when aria2 does not know it."""
        try:
            params: list[Any] = [gid] if keys is None else [gid, list(keys)]
            result: dict[str, Any] = self.call("aria2.tellStatus", *params)
        except Aria2Refused as exc:
            if exc.gid_not_found:
                return None
            raise
        return result

    def get_files(self, gid: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("aria2.getFiles", gid)
        return result

    def _quiet(self, method: str, gid: str) -> bool:
        """Call a per-GID command; False when aria2 refuses (unknown GID, wrong state)."""
        try:
            self.call(method, gid)
        except Aria2Refused:
            return False
        return True

    def force_remove(self, gid: str) -> bool:
        return self._quiet("aria2.forceRemove", gid)

    def force_pause(self, gid: str) -> bool:
        return self._quiet("aria2.forcePause", gid)

    def unpause(self, gid: str) -> bool:
        return self._quiet("aria2.unpause", gid)

    def remove_download_result(self, gid: str) -> bool:
        return self._quiet("aria2.removeDownloadResult", gid)

    def global_stat(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("aria2.getGlobalStat")
        return result

    def poll(self, keys: list[str] | None = None) -> PollResult:
        """Snapshot every download (active, waiting, stopped) in one ``system.multicall``."""
        wanted = keys or POLL_KEYS
        calls = [
            {"methodName": "aria2.getSessionInfo", "params": []},
            {"methodName": "aria2.tellActive", "params": [wanted]},
            {"methodName": "aria2.tellWaiting", "params": [0, _LIST_LIMIT, wanted]},
            {"methodName": "aria2.tellStopped", "params": [0, _LIST_LIMIT, wanted]},
        ]
        answers = self.call("system.multicall", calls)
        for answer in answers:
            if isinstance(answer, dict) and "code" in answer:
                raise Aria2Refused(int(answer["code"]), str(answer.get("message", "")))
        result = PollResult(session_id=str(answers[0][0]["sessionId"]))
        for group in answers[1:]:
            for item in group[0]:
                result.downloads[str(item["gid"])] = item
        return result


def gid_tree(root: str, downloads: dict[str, dict[str, Any]]) -> list[str]:
    """GIDs reachable from ``root`` through ``followedBy``, root first, known ones only."""
    seen: list[str] = []
    pending = [root]
    while pending:
        gid = pending.pop(0)
        if gid in seen or gid not in downloads:
            continue
        seen.append(gid)
        pending.extend(str(child) for child in downloads[gid].get("followedBy", []))
    return seen
