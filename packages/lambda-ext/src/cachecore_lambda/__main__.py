"""``python -m cachecore_lambda``: run the extension (the layer's launcher does)."""

import os
import signal

# Until the extension has its own handlers, a stop signal finds nothing to drain.
for _signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signum, lambda signum, frame: os._exit(0))

from ._runner import run  # noqa: E402

run()
