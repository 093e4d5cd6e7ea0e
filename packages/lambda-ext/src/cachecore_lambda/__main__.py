"""Placeholder entry point of the extension executable: imports what the real one will.

``python -m cachecore_lambda`` (or the ``extensions/cachecore`` executable built by
``layer/build_exe.py``) imports falcon, waitress, botocore, json, ssl, http.client and
the repository's ``cachecore`` and ``cachecore_server``, makes a Secrets Manager
client for us-east-1 (no network), builds the Falcon app, prints ``ok`` and exits 0.
The real extension replaces this module; the build script needs only ``main``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
from collections.abc import Sequence

import botocore
import botocore.session
import falcon
import waitress
import waitress.server

import cachecore
import cachecore_server
from cachecore import Config, SecretCache, SecretsManagerFetcher


def main(argv: Sequence[str] | None = None) -> int:
    """Import, build a client and the app, print ``ok`` (``--version``: versions)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(
            json.dumps(
                {
                    "python": sys.version.split()[0],
                    "openssl": ssl.OPENSSL_VERSION,
                    "botocore": botocore.__version__,
                    "falcon": falcon.__version__,
                    "cachecore_server": cachecore_server.__name__,
                }
            )
        )
        return 0
    session = botocore.session.get_session()
    client = session.create_client(
        "secretsmanager",
        region_name="us-east-1",
        aws_access_key_id="placeholder",
        aws_secret_access_key="placeholder",
    )
    config = Config(region="us-east-1")
    cache = SecretCache(SecretsManagerFetcher(session=session, region="us-east-1"))
    app = cachecore_server.create_app(cache, config)
    ssl.create_default_context()
    assert client.meta.region_name == "us-east-1"
    assert isinstance(app, falcon.App)
    assert callable(http.client.HTTPConnection)
    assert callable(waitress.server.create_server)
    assert cachecore.SecretCache is SecretCache
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
