"""cachecore-lambda: the cachecore HTTP API as an AWS Lambda extension.

The extension serves the same app as ``cachecore-server`` on localhost (ports
8015 and 2773 by default), registered with Lambda's Extensions API; ``main`` runs
it. The layer's ``extensions/cachecore`` launcher starts it with
``python -m cachecore_lambda``.
"""

from ._runner import EXTENSION_NAME, main

__all__ = ["EXTENSION_NAME", "main"]
