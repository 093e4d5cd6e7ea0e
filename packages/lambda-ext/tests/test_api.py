from __future__ import annotations

import pytest

from cachecore_lambda._api import ExtensionsAPI, ExtensionsAPIError


@pytest.mark.parametrize(
    "address", ["", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "host:http", ":9001"]
)
def test_a_runtime_api_address_that_is_no_host_and_port_is_refused(address):
    with pytest.raises(ExtensionsAPIError, match="AWS_LAMBDA_RUNTIME_API must be"):
        ExtensionsAPI(address)


def test_a_runtime_api_address_of_host_and_port_is_taken():
    assert ExtensionsAPI("127.0.0.1:9001").identifier is None
