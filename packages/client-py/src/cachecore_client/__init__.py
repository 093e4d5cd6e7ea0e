"""cachecore-client: the Python SDK for the cachecore HTTP API.

Not built yet; this package holds only its skeleton. It will read secrets from the
sidecar or the Lambda extension with pooled connections, retries and typed errors.
"""

__all__: list[str] = []
