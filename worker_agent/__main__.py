"""`python -m worker_agent --config config/worker.json`."""

from __future__ import annotations

import sys

from worker_agent.main import main

sys.exit(main())
