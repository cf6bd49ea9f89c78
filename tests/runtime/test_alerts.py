"""Alerts: the log always, a webhook posted in the background, against a real HTTP receiver.

The receiver is an asyncio server on 127.0.0.1 (port 0) that records each POST (request line,
headers, JSON body) and answers with a scripted status, or never answers.  Nothing here talks
to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ibpilot.alerts import Alert, AlertKind, Notifier, Severity, WebhookTarget, http_status
from ibpilot.config import AlertsConfig

SECRET = "T000/B000/s3cr3t-token"
START = datetime(2026, 3, 2, 15, 4, 5, tzinfo=UTC)


@dataclass
class Post:
    request_line: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A real HTTP receiver: each POST gets the next of ``statuses`` (then 200), or, with
    ``hang``, no answer at all."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    posts: list[Post] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{SECRET}?x=1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.posts) >= count)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode().rstrip("\r\n")
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().rstrip("\r\n")) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
            async with self._arrived:
                self.posts.append(Post(request_line, headers, json.loads(body)))
                self._arrived.notify_all()
            if self.hang:
                await asyncio.Event().wait()  # until stop() cancels it
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()
            self._handlers.discard(task)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def notifier(url: str | None, clock: Clock | None = None, **settings: Any) -> Notifier:
    fast = {"timeout_s": 2, "retries": 2, "retry_backoff_s": 0.01} | settings
    return Notifier(AlertsConfig(webhook_url=url, **fast), "sma-aapl", clock or Clock())


# --- what is posted ---------------------------------------------------------------------------


async def test_an_alert_is_posted_as_json_with_text_and_content(receiver: Receiver) -> None:
    alerts = notifier(receiver.url)
    await alerts.start()
    queued = alerts.alert(
        AlertKind.HALT, "daily loss limit reached", "critical", loss=Decimal("251.20")
    )
    await receiver.wait_for(1)
    await alerts.close()
    assert queued
    post = receiver.posts[0]
    assert post.request_line == f"POST /hooks/{SECRET}?x=1 HTTP/1.1"
    assert post.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert post.headers["content-type"].startswith("application/json")
    text = "[sma-aapl] CRITICAL halt: daily loss limit reached"
    assert post.body["text"] == post.body["content"] == text
    assert post.body["alert"] == {
        "kind": "halt", "severity": "critical", "bot": "sma-aapl", "key": "",
        "time": "2026-03-02T15:04:05+00:00", "details": {"loss": "251.20"},
    }  # fmt: skip
    assert alerts.status() == {"sent": 1, "failed": 0, "dropped": 0, "suppressed": 0, "pending": 0}


async def test_every_kind_is_posted_with_its_wire_name(receiver: Receiver) -> None:
    alerts = notifier(receiver.url)
    await alerts.start()
    for kind in AlertKind:
        alerts.alert(kind, f"about {kind}")
    await alerts.close()
    assert [post.body["alert"]["kind"] for post in receiver.posts] == [k.value for k in AlertKind]
    assert alerts.sent == len(AlertKind)


def test_a_long_message_is_cut_to_what_discord_accepts() -> None:
    alert = Alert(AlertKind.OTHER, Severity.INFO, "x" * 5000, "bot", START)
    body = json.loads(alert.body())
    assert len(body["content"]) == 2000
    assert body["alert"]["kind"] == "other"


# --- retries and failures ---------------------------------------------------------------------


async def test_a_5xx_is_retried_until_it_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    alerts = notifier(receiver.url, retries=3)
    await alerts.start()
    alerts.alert(AlertKind.ORDER_REJECTED, "201: order rejected", key="AAPL")
    await receiver.wait_for(3)
    await alerts.close()
    assert len(receiver.posts) == 3
    assert (alerts.sent, alerts.failed) == (1, 0)


async def test_a_4xx_is_not_retried(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.statuses = [400]
    alerts = notifier(receiver.url, retries=3)
    await alerts.start()
    alerts.alert(AlertKind.DATA_STALE, "AAPL silent for 5 minutes")
    await alerts.close()
    assert len(receiver.posts) == 1
    assert (alerts.sent, alerts.failed) == (0, 1)
    assert "HTTP 400" in caplog.text


async def test_retries_are_bounded(receiver: Receiver) -> None:
    receiver.statuses = [502] * 10
    alerts = notifier(receiver.url, retries=2)
    await alerts.start()
    alerts.alert(AlertKind.OTHER, "x")
    await alerts.close()
    assert len(receiver.posts) == 3  # the first attempt and 2 retries
    assert (alerts.sent, alerts.failed) == (0, 1)


async def test_a_receiver_that_never_answers_times_out_each_attempt(receiver: Receiver) -> None:
    receiver.hang = True
    alerts = notifier(receiver.url, timeout_s=0.2, retries=1)
    await alerts.start()
    began = time.monotonic()
    alerts.alert(AlertKind.RELOGIN_NEEDED, "log in to the Gateway with 2FA")
    await receiver.wait_for(2)
    await alerts.close(timeout_s=5)
    assert time.monotonic() - began < 2
    assert (alerts.sent, alerts.failed) == (0, 1)


async def test_a_refused_connection_is_retried_then_counted_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = Receiver()
    await closed.start()
    await closed.stop()  # nothing listens on its port any more
    alerts = notifier(closed.url, retries=2)
    await alerts.start()
    alerts.alert(AlertKind.CONNECTION_NOT_RESTORED, "down for 5 minutes")
    await alerts.close()
    assert (alerts.sent, alerts.failed) == (0, 1)
    assert "connection failed" in caplog.text


async def test_the_secret_in_the_url_is_never_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 404]
    alerts = notifier(receiver.url)
    await alerts.start()
    alerts.alert(AlertKind.HALT, "kill switch", "critical")
    await alerts.close()
    assert alerts.failed == 1
    assert f"http://127.0.0.1:{receiver.port}" in caplog.text
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in repr(alerts.config)
    assert "s3cr3t" not in str(alerts.target)


# --- never in the trading loop's way ----------------------------------------------------------


async def test_alert_returns_at_once_while_the_receiver_hangs(receiver: Receiver) -> None:
    receiver.hang = True
    alerts = notifier(receiver.url, timeout_s=30, retries=0, queue_size=1000)
    await alerts.start()
    alerts.alert(AlertKind.OTHER, "first", key="0")
    await receiver.wait_for(1)  # the worker is now stuck on the hanging receiver
    began = time.perf_counter()
    for n in range(200):
        alerts.alert(AlertKind.OTHER, "more", key=str(n + 1))
    assert time.perf_counter() - began < 0.5
    ticks = 0
    for _ in range(5):  # the event loop keeps running meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 5
    assert alerts.pending == 201
    await alerts.close(timeout_s=0.2)


async def test_a_full_queue_drops_the_oldest_and_counts(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = notifier(receiver.url, queue_size=3)
    for n in range(5):  # not started yet: they all wait in the queue
        alerts.alert(AlertKind.OTHER, f"alert {n}", key=str(n))
    assert (alerts.dropped, alerts.pending) == (2, 3)
    assert "alert queue full (3): dropped the oldest" in caplog.text
    await alerts.start()
    await alerts.close()
    assert [post.body["alert"]["details"] for post in receiver.posts] == [{}, {}, {}]
    assert [post.body["text"][-7:] for post in receiver.posts] == ["alert 2", "alert 3", "alert 4"]
    assert alerts.sent == 3


async def test_close_flushes_what_is_pending(receiver: Receiver) -> None:
    alerts = notifier(receiver.url)
    for n in range(10):
        alerts.alert(AlertKind.OTHER, "x", key=str(n))
    await alerts.close()  # never started: close delivers anyway
    assert len(receiver.posts) == 10
    assert (alerts.sent, alerts.pending, alerts.dropped) == (10, 0, 0)


async def test_close_gives_up_at_its_deadline_and_counts_the_rest(receiver: Receiver) -> None:
    receiver.hang = True
    alerts = notifier(receiver.url, timeout_s=30)
    await alerts.start()
    for n in range(3):
        alerts.alert(AlertKind.OTHER, "x", key=str(n))
    await receiver.wait_for(1)
    began = time.monotonic()
    await alerts.close(timeout_s=0.2)
    assert time.monotonic() - began < 1
    assert (alerts.sent, alerts.dropped, alerts.pending) == (0, 3, 0)
    assert not alerts.alert(AlertKind.OTHER, "x", key="0")  # still within its cooldown
    assert alerts.alert(AlertKind.OTHER, "after close")
    assert alerts.dropped == 4  # logged, not posted


# --- de-duplication ---------------------------------------------------------------------------


async def test_a_repeat_within_the_cooldown_is_counted_not_sent(receiver: Receiver) -> None:
    clock = Clock()
    alerts = notifier(receiver.url, clock, cooldown_s=300)
    await alerts.start()
    assert alerts.alert(AlertKind.DATA_STALE, "AAPL silent", key="AAPL")
    clock.now += timedelta(seconds=299)
    assert not alerts.alert(AlertKind.DATA_STALE, "AAPL silent", key="AAPL")
    assert not alerts.alert(AlertKind.DATA_STALE, "AAPL silent", key="AAPL")
    assert alerts.alert(AlertKind.DATA_STALE, "MSFT silent", key="MSFT")  # another key
    assert alerts.alert(AlertKind.HALT, "AAPL", key="AAPL")  # another kind
    clock.now += timedelta(seconds=1)
    assert alerts.alert(AlertKind.DATA_STALE, "AAPL still silent", key="AAPL")
    await alerts.close()
    assert alerts.suppressed == 2
    assert [post.body["alert"]["details"] for post in receiver.posts] == [
        {}, {}, {}, {"repeats_suppressed": 2},
    ]  # fmt: skip


def test_without_a_webhook_alerts_go_to_the_log_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    alerts = Notifier(None, "bot")
    assert alerts.target is None
    assert alerts.alert(AlertKind.HALT, "daily loss", "critical", loss=12)
    assert alerts.alert(AlertKind.OTHER, "fyi", "info")
    [halt, fyi] = caplog.records[-2:]
    assert (halt.levelno, halt.getMessage()) == (
        logging.ERROR, 'ALERT [bot] CRITICAL halt: daily loss {"loss": 12}'
    )  # fmt: skip
    assert fyi.levelno == logging.INFO
    assert alerts.status() == {"sent": 0, "failed": 0, "dropped": 0, "suppressed": 0, "pending": 0}


async def test_start_and_close_without_a_webhook_do_nothing() -> None:
    alerts = Notifier(None, "bot")
    await alerts.start()
    alerts.alert(AlertKind.OTHER, "x")
    await alerts.close()
    assert alerts.pending == 0


def test_an_unknown_kind_or_severity_is_a_bug() -> None:
    with pytest.raises(ValueError, match="'urgent' is not a valid Severity"):
        Notifier(None, "bot").alert(AlertKind.OTHER, "x", "urgent")
    with pytest.raises(ValueError, match="'panic' is not a valid AlertKind"):
        Notifier(None, "bot").alert("panic", "x")
    assert Notifier(None, "bot").alert("halt", "kill switch", "critical")


# --- the URL and the status line --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "where", "port", "target"),
    [
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080", 8080, "/hook"),
        ("https://hooks.example.com/services/T/B/X", "https://hooks.example.com", 443,
         "/services/T/B/X"),
        ("HTTP://Example.com", "http://example.com", 80, "/"),
        ("http://[::1]:9000/a?b=c", "http://[::1]:9000", 9000, "/a?b=c"),
    ],
)  # fmt: skip
def test_webhook_targets(url: str, where: str, port: int, target: str) -> None:
    parsed = WebhookTarget.parse(url)
    assert (str(parsed), parsed.port, parsed.target) == (where, port, target)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/s3cr3t", 'expected an http:// or https:// URL, found scheme "ftp"'),
        ("host/s3cr3t", "expected an http:// or https:// URL, found no scheme"),
        ("https:///s3cr3t", "expected a URL with a host, found https:// without one"),
        ("http://host:99999/s3cr3t", "expected a URL with a valid port"),
        ("http://user:s3cr3t@host/x", "expected a URL without user:password@"),
        ("http://host/sec ret", "expected a URL without spaces or control characters"),
    ],
)
def test_a_bad_webhook_url_is_refused_without_repeating_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^expected") as caught:
        WebhookTarget.parse(url)
    assert str(caught.value).startswith(message)
    assert "s3cr3t" not in str(caught.value)
    assert "sec ret" not in str(caught.value)


@pytest.mark.parametrize(
    ("line", "status"),
    [(b"HTTP/1.1 204 No Content\r\n", 204), (b"HTTP/1.0 500\r\n", 500), (b"HTTP/1.1 429 X", 429)],
)
def test_http_status(line: bytes, status: int) -> None:
    assert http_status(line) == status


@pytest.mark.parametrize(
    "line", [b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 abc\r\n", b"HTTP/1.1 999"]
)
def test_http_status_refuses_what_is_not_a_status_line(line: bytes) -> None:
    with pytest.raises(ValueError, match="not an HTTP status"):
        http_status(line)


async def test_a_receiver_speaking_something_else_is_a_bad_response() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        alerts = notifier(f"http://127.0.0.1:{port}/x", retries=1)
        await alerts.start()
        alerts.alert(AlertKind.OTHER, "x")
        await alerts.close()
        assert (alerts.sent, alerts.failed) == (0, 1)
    finally:
        server.close()
        await server.wait_closed()
