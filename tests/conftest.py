"""Shared fixtures: a real simulated gateway on 127.0.0.1, and real clients.

Every gateway a test starts records the frames it sends; at teardown they are
decoded by both ib_async's and IB's official decoders, and the test fails on any
field left over or missing (see ``wirecheck.py``).  Any "Error handling fields"
(or other error) that ib_async's live decoder logs fails the test too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from ib_async import IB
from wirecheck import WireChecker

from ibpilot.sim import SimGateway
from ibpilot.sim.protocol import MAX_SERVER_VERSION

# A Monday in winter (EST, UTC-5): 2026-03-02 09:25 US/Eastern = 14:25 UTC.
MONDAY_PREOPEN = datetime.fromisoformat("2026-03-02T09:25:00-05:00")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sim(**kwargs): keyword arguments for the SimGateway of this test"
    )


class _DecoderErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:300])


@pytest.fixture(autouse=True)
def ib_async_decoder_errors() -> Iterator[_DecoderErrors]:
    """Fail any test in which ib_async's decoder logged an error."""
    handler = _DecoderErrors()
    logger = logging.getLogger("ib_async.Decoder")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    assert not handler.messages, f"ib_async decoder errors: {handler.messages}"


@pytest.fixture
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[SimGateway]:
    """A simulated gateway on a free loopback port, wire-checked at teardown."""
    marker = request.node.get_closest_marker("sim")
    kwargs: dict[str, Any] = {"start": MONDAY_PREOPEN, "seed": 7}
    if marker is not None:
        kwargs.update(marker.kwargs)
    frames: list[tuple[int, bytes]] = []
    gw = SimGateway("127.0.0.1", 0, wire_tap=lambda sv, data: frames.append((sv, data)), **kwargs)
    async with gw:
        yield gw
    checkers: dict[int, WireChecker] = {}
    problems: list[str] = []
    for sv, data in frames:
        checker = checkers.setdefault(sv, WireChecker(sv or MAX_SERVER_VERSION))
        for decoded in checker.check_stream(data):
            problems += [f"{p} in {decoded.fields!r}" for p in decoded.problems]
    assert not problems, "wire conformance:\n" + "\n".join(problems[:20])


@pytest.fixture
async def ib(gateway: SimGateway) -> AsyncIterator[IB]:
    """ib_async connected with client id 1; start-up sync must complete with no timeout."""
    client = IB()
    await client.connectAsync(
        "127.0.0.1", gateway.port, clientId=1, timeout=5, raiseSyncErrors=True
    )
    yield client
    client.disconnect()
