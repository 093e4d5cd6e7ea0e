"""``python -m cachecore_lambda``: run the extension (the layer's launcher does)."""

from ._runner import run

run()
