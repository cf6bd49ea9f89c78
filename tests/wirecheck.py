"""Two-ended conformance: run the gateway's frames through both real decoders.

Every framed message the simulator sends is decoded by ib_async's ``Decoder`` and by
IB's official ``ibapi`` ``Decoder`` at the negotiated server version.  A message
passes only when:

- ib_async decodes it without logging an error ("Error handling fields" or
  "Error for <method>"), and, for its generic handlers, with exactly as many
  fields as the handler's type list;
- ibapi decodes it with every field consumed (no field left over, none missing).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from ib_async.decoder import Decoder as AsyncDecoder
from ibapi import comm
from ibapi.decoder import Decoder as IbDecoder
from ibapi.utils import BadMessage
from ibapi.wrapper import EWrapper

from ibpilot.sim.protocol import FrameReader, decode_payload


class _Recorder:
    """Stands in for ib_async's Wrapper: records every call."""

    defaultTimezone = UTC  # ib_async's execDetails reads it from the wrapper

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            self.calls.append((name, args))

        return record


class _RecordingEWrapper(EWrapper):  # type: ignore[misc]
    """An official EWrapper that records instead of logging."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if not name.startswith("_") and callable(attr) and hasattr(EWrapper, name):
            calls = object.__getattribute__(self, "calls")

            def record(*args: Any) -> None:
                calls.append((name, args))

            return record
        return attr


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Decoded:
    """What both decoders made of one message."""

    fields: tuple[str, ...]
    async_calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    ibapi_calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class WireChecker:
    """Decodes frames with both clients' decoders and collects any mismatch."""

    def __init__(self, server_version: int = 178) -> None:
        self.server_version = server_version
        self._async_wrapper = _Recorder()
        self._async = AsyncDecoder(self._async_wrapper, server_version)  # type: ignore[arg-type]
        self._ib_wrapper = _RecordingEWrapper()
        self._ib = IbDecoder(self._ib_wrapper, server_version)
        self._errors = _ErrorLog()
        self.checked = 0

    def check_fields(self, fields: tuple[str, ...]) -> Decoded:
        """Decode one message's fields (message id first) with both decoders."""
        result = Decoded(fields)
        self._check_async(fields, result)
        self._check_ibapi(fields, result)
        self.checked += 1
        return result

    def check_stream(self, data: bytes) -> list[Decoded]:
        """Decode every frame in ``data`` (framed messages, no handshake)."""
        reader = FrameReader()
        reader.feed(data)
        out = []
        while (payload := reader.next_payload()) is not None:
            out.append(self.check_fields(decode_payload(payload)))
        if reader.buffered:
            raise AssertionError(f"{reader.buffered} bytes of an incomplete frame")
        return out

    def problems(self, frames: Iterable[bytes]) -> list[str]:
        """All problems found in a sequence of framed messages."""
        found: list[str] = []
        for data in frames:
            for decoded in self.check_stream(data):
                found += [f"{p} in {decoded.fields!r}" for p in decoded.problems]
        return found

    # --- ib_async ---------------------------------------------------------------
    def _check_async(self, fields: tuple[str, ...], result: Decoded) -> None:
        logger = logging.getLogger("ib_async.Decoder")
        self._errors.records.clear()
        logger.addHandler(self._errors)
        before = len(self._async_wrapper.calls)
        try:
            msg_id = int(fields[0])
            handler = self._async.handlers.get(msg_id)
            if handler is None:
                result.problems.append(f"ib_async has no handler for message {msg_id}")
                return
            arity = _wrap_arity(handler)
            if arity is not None and len(fields) != arity:
                result.problems.append(
                    f"ib_async expects {arity} fields for message {msg_id}, got {len(fields)}"
                )
            self._async.interpret(list(fields))
        finally:
            logger.removeHandler(self._errors)
        for record in self._errors.records:
            result.problems.append(f"ib_async logged: {record.getMessage()[:200]}")
        result.async_calls = self._async_wrapper.calls[before:]

    # --- ibapi ------------------------------------------------------------------
    def _check_ibapi(self, fields: tuple[str, ...], result: Decoded) -> None:
        msg_id = int(fields[0])
        rest = comm.read_fields(b"".join(f.encode() + b"\0" for f in fields[1:]))
        info = self._ib.msgId2handleInfo.get(msg_id)
        if info is None:
            result.problems.append(f"ibapi has no handler for message {msg_id}")
            return
        before = len(self._ib_wrapper.calls)
        try:
            if info.wrapperMeth is not None:
                params = info.wrapperParams
                expected = len(params) - 1  # self
                if len(rest) - 1 != expected:  # the first field is the version
                    result.problems.append(
                        f"ibapi expects {expected} fields after the version for "
                        f"{info.wrapperMeth.__name__}, got {len(rest) - 1}"
                    )
                    return
                self._ib.interpretWithSignature(rest, info)
            else:
                it = iter(rest)
                info.processMeth(self._ib, it)
                left = list(it)
                if left:
                    result.problems.append(f"ibapi left {len(left)} field(s) unread: {left!r}")
        except (BadMessage, StopIteration, ValueError, IndexError) as exc:
            result.problems.append(f"ibapi failed: {type(exc).__name__}: {exc}")
        result.ibapi_calls = self._ib_wrapper.calls[before:]


def _wrap_arity(handler: Any) -> int | None:
    """For ib_async's generic ``wrap`` handlers: the exact field count they read."""
    closure = getattr(handler, "__closure__", None)
    code = getattr(handler, "__code__", None)
    if not closure or code is None or inspect.ismethod(handler):
        return None
    cells = dict(zip(code.co_freevars, (c.cell_contents for c in closure), strict=True))
    if "types" not in cells or "skip" not in cells:
        return None
    return int(cells["skip"]) + len(cells["types"])
