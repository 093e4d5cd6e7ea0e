from __future__ import annotations

import pytest
from fakeserver import FakeServer, FakeTime


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(*script) -> FakeServer:
        server = FakeServer(list(script))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
