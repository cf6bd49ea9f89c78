"""The sans-IO wire codec: framing, handshake, field encoding, typed field reading."""

from __future__ import annotations

import contextlib
import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ibpilot.sim.protocol import (
    API_PREFIX,
    MAX_SERVER_VERSION,
    UNSET_DOUBLE,
    UNSET_INTEGER,
    FieldError,
    FieldReader,
    FrameReader,
    Handshake,
    Message,
    ProtocolError,
    ServerFramer,
    Unset,
    decode_payload,
    decode_tag_values,
    encode_field,
    encode_message,
    encode_payload,
    encode_tag_values,
    frame,
    negotiate,
)

# Text a field can carry: anything printable but NUL (the terminator).
field_text = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40
)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
decimals = st.decimals(
    allow_nan=False, allow_infinity=False, places=6, min_value=-1e12, max_value=1e12
)
fields = st.one_of(
    field_text,
    ints,
    finite_floats,
    st.booleans(),
    st.none(),
    decimals,
    st.sampled_from(list(Unset)),
)


def _client_bytes(version_range: str, *messages: list[str]) -> bytes:
    payload = version_range.encode()
    data = API_PREFIX + struct.pack(">I", len(payload)) + payload
    for m in messages:
        data += encode_message(m)
    return data


@given(st.lists(fields, max_size=30))
def test_any_field_list_survives_encode_then_decode(values: list[object]) -> None:
    payload = encode_payload(values)  # type: ignore[arg-type]
    decoded = decode_payload(payload)
    assert len(decoded) == len(values)
    for raw, value in zip(decoded, values, strict=True):
        if isinstance(value, str) and value.isascii():
            assert raw == value
        elif isinstance(value, str):  # non-ASCII goes out escaped, as TWS sends it (ASCII7)
            assert raw.encode().decode("unicode-escape") == value
        elif value is None:
            assert raw == ""
        elif isinstance(value, bool):
            assert raw == ("1" if value else "0")


@given(ints)
def test_integers_read_back_exactly(value: int) -> None:
    reader = FieldReader("test", ("0", encode_field(value)))
    got = reader.opt_int("n")
    if value in (UNSET_INTEGER, 2**63 - 1):
        assert got is None  # IB's sentinels are "no value"
    else:
        assert got == value


@given(finite_floats)
def test_floats_read_back_exactly(value: float) -> None:
    got = FieldReader("test", ("0", encode_field(value))).opt_number("x")
    if value == UNSET_DOUBLE:
        assert got is None
    else:
        assert got == value


@given(decimals)
def test_decimals_read_back_exactly(value: Decimal) -> None:
    got = FieldReader("test", ("0", encode_field(value))).decimal("qty")
    assert got == value


@given(st.booleans())
def test_booleans_read_back(value: bool) -> None:
    assert FieldReader("test", ("0", encode_field(value))).flag("flag") is value


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),  # ib_async's unset
        ("1.7976931348623157e+308", None),  # ibapi's unset (Python repr)
        ("1.7976931348623157E308", None),  # TWS's unset (Java)
        ("Infinite", math.inf),
        ("0.0", 0.0),
        ("185.25", 185.25),
    ],
)
def test_unset_and_special_doubles_from_both_clients(raw: str, expected: float | None) -> None:
    assert FieldReader("reqMktData", ("1", raw)).opt_number("strike") == expected


def test_unset_values_encode_as_tws_sends_them() -> None:
    assert encode_field(Unset.INTEGER) == "2147483647"
    assert encode_field(Unset.DOUBLE) == "1.7976931348623157E308"
    assert encode_field(Unset.LONG) == "9223372036854775807"
    assert encode_field(UNSET_DOUBLE) == "1.7976931348623157E308"
    assert encode_field(math.inf) == "Infinity"
    assert encode_field(Decimal("100.000")) == "100"
    assert encode_field(Decimal("0.5")) == "0.5"


def test_nan_and_nul_are_refused_rather_than_sent_garbled() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode_field(math.nan)
    with pytest.raises(ValueError, match="NUL"):
        encode_field("a\0b")


@given(
    st.lists(
        st.tuples(
            field_text.filter(lambda s: "=" not in s and ";" not in s and s),
            field_text.filter(lambda s: ";" not in s),
        ),
        max_size=8,
    )
)
def test_tag_value_lists_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert decode_tag_values(encode_tag_values(pairs)) == tuple(pairs)


def test_field_errors_name_the_message_the_field_and_what_was_expected() -> None:
    reader = FieldReader("reqMktData", ("1", "11", "abc"))
    reader.integer("version")
    with pytest.raises(FieldError) as info:
        reader.integer("reqId")
    text = str(info.value)
    assert "reqMktData" in text
    assert "'reqId'" in text
    assert "an integer" in text
    assert "'abc'" in text
    with pytest.raises(FieldError, match="end of message"):
        reader.text("symbol")


@given(
    st.lists(st.lists(field_text.filter(str.isascii), min_size=1, max_size=10), max_size=10),
    st.data(),
)
def test_frames_reassemble_whatever_the_chunking(
    messages: list[list[str]], data: st.DataObject
) -> None:
    stream = _client_bytes("v157..178", *messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    framer = ServerFramer()
    events = []
    last = 0
    for cut in [*cuts, len(stream)]:
        framer.receive_data(stream[last:cut])
        last = cut
        events += list(framer.events())
    assert events[0] == Handshake(157, 178, "")
    assert [e.fields for e in events[1:] if isinstance(e, Message)] == [tuple(m) for m in messages]


@given(st.binary(max_size=200))
def test_garbage_either_parses_or_raises_protocol_error(blob: bytes) -> None:
    framer = ServerFramer()
    framer.receive_data(blob)
    with contextlib.suppress(ProtocolError):
        list(framer.events())


def test_handshake_options_and_single_version() -> None:
    framer = ServerFramer()
    payload = b"v100..226 +PACEAPI"
    framer.receive_data(API_PREFIX + struct.pack(">I", len(payload)) + payload)
    assert framer.next_event() == Handshake(100, 226, "+PACEAPI")
    framer = ServerFramer()
    framer.receive_data(API_PREFIX + frame(b"v176"))
    assert framer.next_event() == Handshake(176, 176, "")


def test_non_api_client_is_a_protocol_error() -> None:
    framer = ServerFramer()
    framer.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ProtocolError, match="API prefix"):
        framer.next_event()


def test_oversized_frame_is_refused() -> None:
    reader = FrameReader(max_length=16)
    reader.feed(struct.pack(">I", 17) + b"x" * 17)
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.next_payload()


@pytest.mark.parametrize(
    ("client_min", "client_max", "expected"),
    [
        (157, 178, 178),  # ib_async 2.x
        (100, 226, MAX_SERVER_VERSION),  # ibapi 10.50
        (100, 170, 170),
        (100, 157, 157),
        (100, 156, None),  # cannot reach 157
        (179, 226, None),  # wants more than we speak
    ],
)
def test_negotiation_picks_min_of_client_max_and_178(
    client_min: int, client_max: int, expected: int | None
) -> None:
    assert negotiate(client_min, client_max) == expected
