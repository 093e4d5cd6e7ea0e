"""cachecore-lambda: the cachecore HTTP API as an AWS Lambda extension.

Not built yet; this package holds only its skeleton. It will run the same app as
``cachecore-server`` inside a Lambda layer, registered with the Extensions API.
"""

__all__: list[str] = []
