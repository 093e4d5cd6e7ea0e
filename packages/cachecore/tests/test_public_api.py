from __future__ import annotations

import inspect

import cachecore
from cachecore import _errors


def test_all_is_sorted_and_every_name_exists():
    assert cachecore.__all__ == sorted(cachecore.__all__)
    for name in cachecore.__all__:
        assert hasattr(cachecore, name), name


def test_every_exception_of_the_tree_is_exported():
    classes = {
        name
        for name, obj in inspect.getmembers(_errors, inspect.isclass)
        if issubclass(obj, cachecore.CacheError)
    }

    assert classes <= set(cachecore.__all__)


def test_errors_inherit_the_builtin_of_their_meaning():
    assert issubclass(cachecore.ConfigError, ValueError)
    assert issubclass(cachecore.SecretNotFoundError, LookupError)
    assert issubclass(cachecore.AccessDeniedError, PermissionError)
    assert issubclass(cachecore.UpstreamTimeoutError, TimeoutError)
    assert issubclass(cachecore.UpstreamUnavailableError, ConnectionError)
