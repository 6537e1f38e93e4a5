"""ariacluster worker agent: drives a local aria2c for the dispatcher. Never imports Django."""

from __future__ import annotations

__version__ = "0.1.0"
