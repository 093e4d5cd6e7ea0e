"""The ``cachecore-server`` command's entry point, light enough to run first.

Until a server installs its own handlers, SIGTERM or SIGINT ends start-up with
exit code 0 and no traceback: there is nothing to drain yet. The handler is in
place before Falcon, botocore or a server is imported.

Before any thread starts, glibc's malloc is held to ``MALLOC_ARENAS`` arenas
(unless ``MALLOC_ARENA_MAX`` is set, which glibc reads itself). glibc would give
threads arenas of their own, up to eight per core, and each keeps what is freed
in it: with a request thread and a fetch thread per miss, a sidecar that cached
1000 secrets of 4 KiB held about a quarter more memory (``docs/benchmarks.md``).
The GIL serialises the threads' allocations anyway, so two arenas cost nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["MALLOC_ARENAS", "limit_malloc_arenas", "run"]

#: The malloc arenas the sidecar keeps to, unless ``MALLOC_ARENA_MAX`` is set.
MALLOC_ARENAS = 2
#: glibc's ``mallopt`` parameter for the most arenas (``M_ARENA_MAX``).
_M_ARENA_MAX = -8


def limit_malloc_arenas() -> bool:
    """Hold glibc's malloc to ``MALLOC_ARENAS`` arenas; whether it was done.

    Nothing is done where ``MALLOC_ARENA_MAX`` is set, off Linux, or where the C
    library has no ``mallopt`` (as glibc and musl have).
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def _stop_starting(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run() -> None:
    """Console-script entry point: ``cachecore-server``."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_starting)
    limit_malloc_arenas()
    from ._cli import main

    sys.exit(main())
