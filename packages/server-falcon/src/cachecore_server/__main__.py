"""``python -m cachecore_server``: the same as the ``cachecore-server`` command."""

from ._cli import run

run()
