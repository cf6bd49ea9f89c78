"""The TWS API wire codec, sans-IO: bytes in, messages out, and back.

Framing (server versions 100..200, the text protocol):

- the client opens with the raw bytes ``API\\0`` followed by one length-prefixed
  payload ``v<min>..<max>[ <connect options>]``;
- the server answers with one length-prefixed payload of exactly two fields:
  ``<server version>\\0<connection time>\\0``;
- every later message, in both directions, is a 4-byte big-endian length followed
  by NUL-terminated text fields, the first of which is the message id.

Nothing here touches a socket or a clock: :class:`ServerFramer` is fed bytes and
yields :class:`Handshake` and :class:`Message` events; :func:`encode_message`
turns fields into bytes.  :class:`FieldReader` reads typed request fields and
names the field in every error.
"""

from __future__ import annotations

import enum
import math
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

API_PREFIX = b"API\0"
MAX_MESSAGE_LENGTH = 0xFFFFFF  # IB's own bound (ibapi MAX_MSG_LEN)
MIN_CLIENT_VERSION = 157  # the oldest API we speak: ib_async 2.x's floor
MAX_SERVER_VERSION = 178  # highest server version served (text protocol, no protobuf)

UNSET_INTEGER = 2**31 - 1
UNSET_LONG = 2**63 - 1
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_DOUBLE_WIRE = "1.7976931348623157E308"  # how TWS (Java) writes Double.MAX_VALUE
INFINITY_WIRE = "Infinity"  # what ibapi reads back; ib_async's float() too

_HEADER = struct.Struct(">I")
_VERSION_RE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?: (.*))?$", re.DOTALL)


class ProtocolError(Exception):
    """The peer broke the wire protocol; the connection cannot continue."""


class FieldError(ProtocolError):
    """A request field could not be read as the type its message defines."""

    def __init__(self, message: str, field: str, expected: str, found: str) -> None:
        super().__init__(f"{message}: field '{field}' expected {expected}, found {found!r}")
        self.message = message
        self.field = field
        self.expected = expected
        self.found = found


class Unset(enum.Enum):
    """IB's "no value": encoded as the Java sentinels TWS itself sends."""

    INTEGER = "int"
    DOUBLE = "double"
    LONG = "long"


Field: TypeAlias = str | int | float | bool | Decimal | Unset | None


def encode_field(value: Field) -> str:
    """Encode one field as TWS writes it (without the NUL terminator)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int
        return "1" if value else "0"
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"field contains a NUL byte: {value!r}")
        # TWS sends text ASCII7-encoded from server version 153; clients unescape it.
        return value if value.isascii() else value.encode("unicode_escape").decode("ascii")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, Decimal):
        return _encode_decimal(value)
    if value is Unset.INTEGER:
        return str(UNSET_INTEGER)
    if value is Unset.LONG:
        return str(UNSET_LONG)
    return UNSET_DOUBLE_WIRE


def _encode_float(value: float) -> str:
    if math.isnan(value):
        raise ValueError("NaN has no wire form; send an unset value instead")
    if math.isinf(value):
        return INFINITY_WIRE if value > 0 else "-" + INFINITY_WIRE
    if value == UNSET_DOUBLE:
        return UNSET_DOUBLE_WIRE
    return repr(value)


def _encode_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"decimal {value} has no wire form")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def encode_payload(fields: Iterable[Field]) -> bytes:
    """The NUL-terminated text of one message, without its length prefix."""
    return "".join(encode_field(f) + "\0" for f in fields).encode("ascii")


def frame(payload: bytes) -> bytes:
    """Prefix a payload with its 4-byte big-endian length."""
    if len(payload) > MAX_MESSAGE_LENGTH:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_LENGTH}")
    return _HEADER.pack(len(payload)) + payload


def encode_message(fields: Iterable[Field]) -> bytes:
    """One framed message: length prefix plus NUL-terminated fields."""
    return frame(encode_payload(fields))


def decode_payload(payload: bytes) -> tuple[str, ...]:
    """Split a payload into its fields (the trailing terminator yields no field)."""
    text = payload.decode("utf-8", errors="backslashreplace")
    parts = text.split("\0")
    if parts and parts[-1] == "":
        parts.pop()
    return tuple(parts)


def encode_tag_values(pairs: Sequence[tuple[str, str]]) -> str:
    """IB's TagValue list in one field: ``tag=value;tag=value;``."""
    return "".join(f"{tag}={value};" for tag, value in pairs)


def decode_tag_values(text: str) -> tuple[tuple[str, str], ...]:
    """Inverse of :func:`encode_tag_values`; tolerates a missing final ``;``."""
    pairs = []
    for item in text.split(";"):
        if not item:
            continue
        tag, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"TagValue item {item!r} has no '='")
        pairs.append((tag, value))
    return tuple(pairs)


def handshake_reply(server_version: int, connection_time: str) -> bytes:
    """The server's first frame: version and connection time, no message id."""
    return encode_message([server_version, connection_time])


def negotiate(client_min: int, client_max: int) -> int | None:
    """The server version to speak, or None when the client's range is not served."""
    version = min(client_max, MAX_SERVER_VERSION)
    if version < MIN_CLIENT_VERSION or version < client_min:
        return None
    return version


@dataclass(frozen=True, slots=True)
class Handshake:
    """The client's opening: its version range and connect options (e.g. +PACEAPI)."""

    min_version: int
    max_version: int
    options: str


@dataclass(frozen=True, slots=True)
class Message:
    """One framed message; ``fields[0]`` is the message id."""

    fields: tuple[str, ...]

    @property
    def msg_id(self) -> int:
        """The numeric message id; raises ProtocolError when it is not a number."""
        if not self.fields:
            raise ProtocolError("empty message")
        try:
            return int(self.fields[0])
        except ValueError:
            raise ProtocolError(f"message id {self.fields[0]!r} is not a number") from None


Event: TypeAlias = Handshake | Message


class FrameReader:
    """Reassembles length-prefixed frames from a byte stream."""

    def __init__(self, max_length: int = MAX_MESSAGE_LENGTH) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_length

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive."""
        if len(self._buf) - self._pos < 4:
            return None
        (size,) = _HEADER.unpack_from(self._buf, self._pos)
        if size > self._max:
            raise ProtocolError(f"frame length {size} exceeds the maximum {self._max}")
        end = self._pos + 4 + size
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[self._pos + 4 : end])
        self._pos = end
        return payload

    def take_raw(self, count: int) -> bytes | None:
        """Consume ``count`` raw (unframed) bytes, or None until they have arrived."""
        if len(self._buf) - self._pos < count:
            return None
        raw = bytes(self._buf[self._pos : self._pos + count])
        self._pos += count
        return raw

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf) - self._pos


class _Phase(enum.Enum):
    PREFIX = "prefix"
    VERSION = "version"
    MESSAGES = "messages"


class ServerFramer:
    """Server side of the framing: ``API\\0``, the version range, then messages."""

    def __init__(self) -> None:
        self._reader = FrameReader()
        self._phase = _Phase.PREFIX

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket."""
        self._reader.feed(data)

    def next_event(self) -> Event | None:
        """The next complete event, or None until more bytes arrive."""
        if self._phase is _Phase.PREFIX:
            prefix = self._reader.take_raw(len(API_PREFIX))
            if prefix is None:
                return None
            if prefix != API_PREFIX:
                raise ProtocolError(
                    f"expected the API prefix {API_PREFIX!r}, received {prefix!r}: "
                    "not a TWS API client (or a pre-v100 client)"
                )
            self._phase = _Phase.VERSION
        payload = self._reader.next_payload()
        if payload is None:
            return None
        if self._phase is _Phase.VERSION:
            self._phase = _Phase.MESSAGES
            return parse_version_range(payload)
        return Message(decode_payload(payload))

    def events(self) -> Iterator[Event]:
        """All complete events buffered so far."""
        while (event := self.next_event()) is not None:
            yield event


def parse_version_range(payload: bytes) -> Handshake:
    """Parse ``v<min>..<max>[ options]``; a single ``v<n>`` means min = max = n."""
    text = payload.decode("ascii", errors="replace").rstrip("\0")
    match = _VERSION_RE.match(text)
    if match is None:
        raise ProtocolError(f"expected a version range like 'v157..178', received {text!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if low > high:
        raise ProtocolError(f"version range {text!r} has min above max")
    return Handshake(low, high, match.group(3) or "")


class FieldReader:
    """A cursor over one request's fields, reading them as typed values.

    Both ib_async and IB's client write "no value" in their own ways ("" or the
    Java sentinels, ``1.7976931348623157e+308`` in either case); both are read as
    None.  Every error names the message and the field.
    """

    def __init__(self, message: str, fields: Sequence[str], start: int = 1) -> None:
        self.message = message
        self._fields = fields
        self._pos = start

    def _next(self, name: str, expected: str) -> str:
        if self._pos >= len(self._fields):
            raise FieldError(self.message, name, expected, "end of message")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    @property
    def remaining(self) -> int:
        """Fields not read yet."""
        return max(0, len(self._fields) - self._pos)

    def text(self, name: str) -> str:
        """A text field."""
        return self._next(name, "text")

    def integer(self, name: str, default: int = 0) -> int:
        """An integer; empty or IB's unset sentinel gives ``default``."""
        raw = self._next(name, "an integer")
        value = self._opt_int(raw, name)
        return default if value is None else value

    def opt_int(self, name: str) -> int | None:
        """An integer or None when unset."""
        return self._opt_int(self._next(name, "an integer"), name)

    def _opt_int(self, raw: str, name: str) -> int | None:
        text = raw.strip()
        if text == "" or text in (str(UNSET_INTEGER), str(UNSET_LONG)):
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:  # some clients write integral values as floats ("5.0")
            as_float = float(text)
        except ValueError:
            raise FieldError(self.message, name, "an integer", raw) from None
        if not as_float.is_integer():
            raise FieldError(self.message, name, "an integer", raw)
        return int(as_float)

    def number(self, name: str, default: float = 0.0) -> float:
        """A float; empty or unset gives ``default``."""
        value = self.opt_number(name)
        return default if value is None else value

    def opt_number(self, name: str) -> float | None:
        """A float or None when unset."""
        raw = self._next(name, "a number")
        text = raw.strip()
        if text == "":
            return None
        if text in ("Infinite", "Infinity", "inf"):
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise FieldError(self.message, name, "a number", raw) from None
        if value == UNSET_DOUBLE or math.isnan(value):
            return None
        return value

    def decimal(self, name: str) -> Decimal | None:
        """A decimal quantity or None when unset."""
        raw = self._next(name, "a decimal")
        text = raw.strip()
        if text == "" or text in (str(UNSET_INTEGER), str(UNSET_LONG), UNSET_DOUBLE_WIRE):
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise FieldError(self.message, name, "a decimal", raw) from None
        if not value.is_finite() or float(value) == UNSET_DOUBLE:
            return None
        return value

    def flag(self, name: str) -> bool:
        """A boolean written as 0/1 (empty is false)."""
        raw = self._next(name, "0 or 1")
        text = raw.strip()
        if text in ("", "0", "false", "False"):
            return False
        if text in ("1", "true", "True"):
            return True
        value = self._opt_int(text, name)
        if value is None:
            return False
        return value != 0

    def tag_values(self, name: str) -> tuple[tuple[str, str], ...]:
        """A TagValue list field (``tag=value;...``)."""
        raw = self._next(name, "a TagValue list")
        try:
            return decode_tag_values(raw)
        except ValueError:
            raise FieldError(self.message, name, "a TagValue list 'tag=value;'", raw) from None
