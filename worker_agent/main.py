"""Command line: ``python -m worker_agent --config config/worker.json [flags]``.

Flags override environment variables, which override the file (see :mod:`worker_agent.config`).
Exit codes: 0 stopped by SIGTERM/SIGINT, 2 invalid configuration, 1 any other fatal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from worker_agent.agent import Agent
from worker_agent.config import AgentConfig, ConfigError, load_config
from worker_agent.health import agent_health
from worker_agent.logs import configure_logging

log = logging.getLogger("worker_agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker_agent", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("ARIACLUSTER_WORKER_CONFIG"),
        help="worker.json (env ARIACLUSTER_WORKER_CONFIG)",
    )
    parser.add_argument("--name", help="worker name (worker.name)")
    parser.add_argument("--dispatcher-url", help="dispatcher base URL (dispatcher.url)")
    parser.add_argument("--download-dir", help="download root (aria2.download_dir)")
    parser.add_argument("--max-tasks", type=int, help="concurrent tasks (worker.max_tasks)")
    parser.add_argument("--state-dir", help="journal/session dir (agent.state_dir)")
    parser.add_argument("--aria2c", help="aria2c binary (aria2.aria2c_path)")
    parser.add_argument("--aria2-port", type=int, help="aria2 RPC port, 0 = any free (aria2.port)")
    parser.add_argument("--heartbeat-timeout", type=float, help="self-fencing delay in seconds")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if this agent's aria2c answers and its state dir is sane",
    )
    return parser


def run_check(config: AgentConfig) -> int:
    """Print the health check's verdict; 0 healthy, 1 not."""
    problems = agent_health(config)
    for problem in problems:
        print(f"worker_agent: unhealthy: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"worker_agent: {config.name} healthy")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the agent until SIGTERM/SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    overrides = {
        "worker.name": args.name,
        "dispatcher.url": args.dispatcher_url,
        "aria2.download_dir": args.download_dir,
        "worker.max_tasks": args.max_tasks,
        "agent.state_dir": args.state_dir,
        "aria2.aria2c_path": args.aria2c,
        "aria2.port": args.aria2_port,
        "agent.heartbeat_timeout": args.heartbeat_timeout,
        "log_level": args.log_level.upper() if args.log_level else None,
    }
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"worker_agent: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return run_check(config)
    try:
        configure_logging(
            config.log_level,
            log_file=config.log_file,
            log_format=config.log_format,
            context={"worker": config.name},
        )
    except OSError as exc:
        print(
            f"worker_agent: config log_file: cannot write {config.log_file}: {exc}", file=sys.stderr
        )
        return 2
    if not config.api_key:
        log.warning("no join key: set dispatcher.api_key or ARIACLUSTER_JOIN_KEY")
    try:
        agent = Agent(config)
    except ConfigError as exc:
        print(f"worker_agent: {exc}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s received: stopping", signal.Signals(signum).name)
        agent.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return agent.run()
    except Exception:
        log.exception("agent crashed")
        return 1
