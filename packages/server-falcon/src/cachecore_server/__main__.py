"""``python -m cachecore_server``: the same as the ``cachecore-server`` command."""

from ._entry import run

run()
