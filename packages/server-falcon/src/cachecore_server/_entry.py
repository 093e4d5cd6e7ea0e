"""The ``cachecore-server`` command's entry point, light enough to run first.

Until a server installs its own handlers, SIGTERM or SIGINT ends start-up with
exit code 0 and no traceback: there is nothing to drain yet. The handler is in
place before Falcon, botocore or a server is imported.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["run"]


def _stop_starting(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run() -> None:
    """Console-script entry point: ``cachecore-server``."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_starting)
    from ._cli import main

    sys.exit(main())
