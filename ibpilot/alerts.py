"""Alerts a human should see: always to the log, and to an optional JSON webhook.

:meth:`Notifier.alert` is synchronous and returns at once: it logs the alert and puts it on
a bounded queue that a background asyncio task (:meth:`Notifier.start`) delivers, so a slow
or dead receiver never slows the trading loop.  When the queue is full the oldest alert is
dropped, counted and logged.  Call it from the event loop's thread.

Delivery is one HTTP/1.1 POST per alert (``http://``, or ``https://`` with the default SSL
context) written on ``asyncio.open_connection``; the body is JSON that Slack (``text``),
Discord (``content``) and generic receivers (``alert``) accept::

    {"text": "[bot] CRITICAL halt: daily loss limit reached",
     "content": "[bot] CRITICAL halt: daily loss limit reached",
     "alert": {"kind": "halt", "severity": "critical", "bot": "bot", "key": "",
               "time": "2026-03-02T15:04:05+00:00", "details": {"loss": "251.20"}}}

Each attempt has a timeout; connection errors, timeouts, malformed answers, 5xx, 408 and 429
are retried up to ``retries`` times with exponential backoff; any other status is final.  An
alert of the same (kind, key) within ``cooldown_s`` of the last one is logged at DEBUG and
counted, not re-sent; the next one sent says how many were suppressed.  :meth:`close`
delivers what is pending until its deadline, then gives up (counted as dropped).  The
webhook URL may hold a secret: only its scheme and host are ever logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ibpilot.config import AlertsConfig

__all__ = ["Alert", "AlertKind", "Notifier", "Severity", "WebhookTarget", "http_status"]

log = logging.getLogger("ibpilot.alerts")
Clock = Callable[[], datetime]
MAX_TEXT = 2000  # Discord refuses longer "content"
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
_RETRYABLE_4XX = frozenset({408, 429})
_MAX_COOLDOWN_KEYS = 1024


class AlertKind(StrEnum):
    CONNECTION_NOT_RESTORED = "connection_not_restored"  # not back within the threshold
    HALT = "halt"  # daily loss, mandate integrity, kill switch
    ORDER_REJECTED = "order_rejected"
    RECONCILIATION_UNEXPECTED = "reconciliation_unexpected"
    RELOGIN_NEEDED = "relogin_needed"  # the weekly token invalidation passed
    DATA_STALE = "data_stale"
    OTHER = "other"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as it is logged and posted."""

    kind: AlertKind
    severity: Severity
    message: str
    bot: str
    time: datetime
    key: str = ""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def text(self) -> str:
        """One line for humans, at most :data:`MAX_TEXT` characters."""
        text = f"[{self.bot}] {self.severity.upper()} {self.kind}: {self.message}"
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"

    def body(self) -> bytes:
        """The webhook's JSON body (values JSON cannot hold are sent as their ``str``)."""
        alert = {
            "kind": self.kind.value, "severity": self.severity.value, "bot": self.bot,
            "key": self.key, "time": self.time.isoformat(), "details": dict(self.details),
        }  # fmt: skip
        document = {"text": self.text, "content": self.text, "alert": alert}
        return json.dumps(document, default=str, ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where a webhook URL points. ``str()`` is scheme and host only, safe to log."""

    scheme: str
    host: str
    port: int
    target: str  # path and query: may hold the secret

    @classmethod
    def parse(cls, url: str) -> WebhookTarget:
        """Raises ValueError with a message that never repeats the URL's path or query."""
        if url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise ValueError("expected a URL without spaces or control characters")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            found = f'scheme "{scheme}"' if scheme else "no scheme"
            raise ValueError(f"expected an http:// or https:// URL, found {found}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("expected a URL without user:password@ (put the secret in the path)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("expected a URL with a valid port, found an invalid one") from None
        if not parts.hostname:
            raise ValueError(f"expected a URL with a host, found {scheme}:// without one")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if scheme == "https" else 80
        return cls(scheme, parts.hostname, port or default_port, target)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = self.port == (443 if self.scheme == "https" else 80)
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")

    def request(self, body: bytes) -> bytes:
        """The complete HTTP/1.1 POST of ``body`` (JSON), asking to close afterwards."""
        authority = str(self).split("://", 1)[1]
        head = (
            f"POST {self.target} HTTP/1.1\r\nHost: {authority}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nUser-Agent: ibpilot\r\nConnection: close\r\n\r\n"
        )
        return head.encode("ascii", "strict") + body


class _BadResponse(Exception):
    """The receiver answered something that is not an HTTP status line."""


def http_status(status_line: bytes) -> int:
    """The status code of an HTTP/1.x status line. Raises ValueError if it is not one."""
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {status_line[:40]!r}")
    code = int(parts[1])
    if not 100 <= code <= 599:
        raise ValueError(f"not an HTTP status code: {code}")
    return code


class Notifier:
    """Logs every alert and posts it to ``config.webhook_url`` (if set) in the background.

    ``config`` None means log only with the defaults.  Counters for the status view:
    ``sent``, ``failed`` (gave up after retries or on a final status), ``dropped`` (queue
    full, after close, or still pending at close's deadline) and ``suppressed`` (repeats
    within the cooldown).
    """

    def __init__(self, config: AlertsConfig | None, bot_name: str, clock: Clock = _utc_now) -> None:
        from ibpilot.config import AlertsConfig  # noqa: PLC0415 (config imports this module)

        self.config = config or AlertsConfig()
        self.bot_name, self._clock = bot_name, clock
        url = self.config.webhook_url
        self.target = WebhookTarget.parse(url) if url else None
        self.sent = self.failed = self.dropped = self.suppressed = 0
        self._queue: deque[Alert] = deque()
        self._in_flight: Alert | None = None
        self._last: dict[tuple[AlertKind, str], datetime] = {}
        self._repeats: dict[tuple[AlertKind, str], int] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = self._closed = False
        self._ssl: ssl.SSLContext | None = None

    @property
    def pending(self) -> int:
        """Alerts queued or being delivered."""
        return len(self._queue) + (self._in_flight is not None)

    def status(self) -> dict[str, int]:
        return {
            "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
            "suppressed": self.suppressed, "pending": self.pending,
        }  # fmt: skip

    def alert(
        self,
        kind: AlertKind | str,
        message: str,
        severity: Severity | str = Severity.WARNING,
        key: str = "",
        **details: Any,
    ) -> bool:
        """Log the alert and queue it for the webhook; never blocks.

        Returns False if it repeats (kind, key) within the cooldown (logged at DEBUG only).
        Raises ValueError on an unknown kind or severity (a bug of the caller's).
        """
        kind, level, now = AlertKind(kind), Severity(severity), self._clock()
        if self._repeat(kind, key, now):
            log.debug("alert %s %r repeated within the cooldown: not re-sent", kind, key)
            return False
        repeats = self._repeats.pop((kind, key), 0)
        if repeats:
            details["repeats_suppressed"] = repeats
        alert = Alert(kind, level, message, self.bot_name, now, key, MappingProxyType(details))
        extra = f" {json.dumps(details, default=str)}" if details else ""
        log.log(_LOG_LEVELS[level], "ALERT %s%s", alert.text, extra)
        if self.target is not None:
            self._enqueue(alert)
        return True

    def _repeat(self, kind: AlertKind, key: str, now: datetime) -> bool:
        last = self._last.get((kind, key))
        cooldown = timedelta(seconds=float(self.config.cooldown_s))
        if last is not None and timedelta(0) <= now - last < cooldown:
            self.suppressed += 1
            self._repeats[kind, key] = self._repeats.get((kind, key), 0) + 1
            return True
        if len(self._last) >= _MAX_COOLDOWN_KEYS:  # forget keys whose cooldown is over
            self._last = {k: at for k, at in self._last.items() if now - at < cooldown}
            self._repeats = {k: n for k, n in self._repeats.items() if k in self._last}
        self._last[kind, key] = now
        return False

    def _enqueue(self, alert: Alert) -> None:
        if self._closed:
            self.dropped += 1
            log.warning("alert %s not sent to %s: the notifier is closed", alert.kind, self.target)
            return
        if len(self._queue) >= self.config.queue_size:
            oldest = self._queue.popleft()
            self.dropped += 1
            log.warning(
                "alert queue full (%d): dropped the oldest (%s, %s); %d dropped so far",
                self.config.queue_size, oldest.kind, oldest.time.isoformat(), self.dropped,
            )  # fmt: skip
        self._queue.append(alert)
        self._wakeup.set()

    async def start(self) -> None:
        """Start delivering in the background (no-op without a webhook or if started)."""
        if self.target is not None and self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(self.target), name="ibpilot-alerts")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is pending for at most ``timeout_s`` seconds, then stop."""
        if self._closed:
            return
        self._closing = True
        if self._task is None and self._queue:
            await self.start()
        self._wakeup.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._closed = True
        if self.pending:
            log.warning("%d alert(s) not delivered to %s by close", self.pending, self.target)
            self.dropped += self.pending
            self._queue.clear()
            self._in_flight = None

    async def _run(self, target: WebhookTarget) -> None:
        while True:
            while self._queue:
                alert = self._in_flight = self._queue.popleft()
                try:
                    await self._deliver(target, alert)
                except asyncio.CancelledError:
                    raise  # close's deadline: the alert in flight is counted dropped
                except Exception:  # a bug of ours must not end delivery of later alerts
                    self.failed += 1
                    log.exception("alert %s: delivery failed unexpectedly", alert.kind)
                self._in_flight = None
            if self._closing:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _deliver(self, target: WebhookTarget, alert: Alert) -> None:
        request = target.request(alert.body())
        retries, backoff = self.config.retries, float(self.config.retry_backoff_s)
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(min(backoff * 2 ** (attempt - 1), 60.0))
            reason, final = await self._attempt(target, request)
            if not reason:
                self.sent += 1
                return
            if final or attempt == retries:
                break
            log.info("alert %s: %s from %s; retrying", alert.kind, reason, target)
        self.failed += 1
        log.warning("alert %s not delivered to %s: %s", alert.kind, target, reason)

    async def _attempt(self, target: WebhookTarget, request: bytes) -> tuple[str, bool]:
        """One POST: ("", True) on 2xx, else (reason, whether retrying is pointless)."""
        timeout = float(self.config.timeout_s)
        try:
            async with asyncio.timeout(timeout):
                status = await self._post(target, request)
        except TimeoutError:
            return f"no answer within {timeout:g} s", False
        except OSError as exc:
            return f"connection failed ({exc.strerror or type(exc).__name__})", False
        except _BadResponse as exc:
            return str(exc), False
        if 200 <= status < 300:
            return "", True
        retry = status >= 500 or status in _RETRYABLE_4XX
        return f"HTTP {status}", not retry

    async def _post(self, target: WebhookTarget, request: bytes) -> int:
        context = None
        if target.scheme == "https":
            self._ssl = self._ssl or ssl.create_default_context()
            context = self._ssl
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context)
        try:
            writer.write(request)
            await writer.drain()
            line = b""
            try:
                line = await reader.readline()
                return http_status(line)
            except ValueError as exc:  # also a status line over the reader's limit
                found = "no answer" if not line else str(exc)
                raise _BadResponse(f"bad response: {found}") from None
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
