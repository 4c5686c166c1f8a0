"""Property-based fuzzing of every decoder a stage runs on received bytes.

The contract: ``codec.decode`` returns a map or raises ``CodecError``;
``messages.validate`` and ``messages.validate_request`` return the message or
raise ``SchemaError``/``CodecError``. Never another exception, never a hang
(the hypothesis deadline catches slow inputs).
"""
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from bus import codec, messages
from bus.schema import SchemaError

from fuzzing import VALID, VALID_REQUESTS

FUZZ = settings(max_examples=100, deadline=2000)
REJECTIONS = (codec.CodecError, SchemaError)


# --- strategies -----------------------------------------------------------------

def arrays() -> st.SearchStrategy:
    return hnp.arrays(st.sampled_from(sorted(codec.ALLOWED_DTYPES)),
                      hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
           | st.text(max_size=20) | st.binary(max_size=20))
field_names = st.sampled_from(["type", "schema", "job", "cmd", "index", "people", "options", "source", "image",
                               "jpeg", "timestamps", "extras"]) | st.text(max_size=8)
msgpack_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(field_names, inner, max_size=4), max_leaves=12)
decoded_values = st.recursive(scalars | arrays(), lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(field_names, inner, max_size=4), max_leaves=12)


def ext_header(draw) -> bytes:
    """An ndarray extension body: mostly well-formed headers with a wrong detail."""
    dtype = draw(st.sampled_from(sorted(codec.ALLOWED_DTYPES)) | st.sampled_from(["|O", "<c8", "|V4", ""])
                 | msgpack_values)
    shape = draw(st.lists(st.integers(-2, 2**64 - 1) | st.sampled_from([2**31, 2**32, 2**62, 2**63]), max_size=4)
                 | msgpack_values)
    data = draw(st.binary(max_size=64) | st.integers(-3, 3) | msgpack_values)
    header = draw(st.sampled_from(["triple", "short", "garbage"]))
    if header == "garbage":
        return draw(st.binary(max_size=16))
    return msgpack.packb([dtype, shape, data] if header == "triple" else [dtype, shape], use_bin_type=True)


@st.composite
def with_extensions(draw) -> dict:
    """A map holding random ExtType values (array headers declaring huge shapes, other codes)."""
    values = {}
    for i in range(draw(st.integers(1, 3))):
        code = draw(st.sampled_from([codec.EXT_NDARRAY, codec.EXT_NDARRAY, 0, 2, 127]))
        values[f"a{i}"] = msgpack.ExtType(code, ext_header(draw))
    return values


@st.composite
def mutated(draw, value):
    """``value`` with one random change somewhere inside: a field replaced, removed or added, a list cut."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        choice = draw(st.sampled_from(["descend", "replace", "remove", "add"]))
        changed = dict(value)
        if choice == "descend":
            changed[key] = draw(mutated(value[key]))
        elif choice == "replace":
            changed[key] = draw(decoded_values)
        elif choice == "remove":
            del changed[key]
        else:
            changed[draw(field_names)] = draw(decoded_values)
        return changed
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + [draw(mutated(value[i]))] + value[i + 1:]
    if isinstance(value, np.ndarray):
        return draw(arrays() | st.just(value.reshape(-1)) | st.just(value.astype(np.float64)))
    return draw(decoded_values)


def mutated_map(value: dict) -> st.SearchStrategy:
    """A mutation of ``value`` that is still a map (what the validators get from the codec)."""
    return mutated(value).filter(lambda changed: isinstance(changed, dict))


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, cut, inserted or deleted."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "truncate":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif at < len(data):
            del data[at]
    return bytes(data)


@st.composite
def mutated_encodings(draw) -> list:
    """The parts of a valid message with the payload or a buffer mangled, or parts dropped or added."""
    parts = [bytes(part) for part in codec.encode(draw(st.sampled_from(VALID)))]
    edit = draw(st.sampled_from(["payload", "buffer", "drop", "add", "swap"]))
    if edit == "payload" or (edit in ("buffer", "swap") and len(parts) == 1):
        parts[0] = draw(mutated_bytes(parts[0]))
    elif edit == "buffer":
        parts[1] = draw(mutated_bytes(parts[1]))
    elif edit == "drop":
        parts = parts[:-1] if len(parts) > 1 else []
    elif edit == "add":
        parts.append(draw(st.binary(max_size=64)))
    else:
        parts[0], parts[1] = parts[1], parts[0]
    return parts


# --- checks ---------------------------------------------------------------------

def iter_values(value):
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from iter_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_values(item)


def decode_or_reject(parts):
    try:
        message = codec.decode(parts)
    except codec.CodecError:
        return None
    assert isinstance(message, dict)
    return message


def validate_or_reject(message: dict, validator=messages.validate) -> None:
    try:
        assert validator(message) is message
    except REJECTIONS:
        return
    if validator is messages.validate and message["type"] == "detections":
        messages.frame_detections(message)  # what the track stage does next


# --- codec.decode -----------------------------------------------------------------

@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_decode_random_bytes(parts):
    decode_or_reject(parts)


@FUZZ
@given(msgpack_values, st.lists(st.binary(max_size=64), max_size=2))
def test_decode_random_msgpack_values(value, extra_parts):
    payload = msgpack.packb(value, use_bin_type=True)
    message = decode_or_reject([payload, *extra_parts])
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and not any(
            isinstance(v, float) and v != v for v in iter_values(value)):
        assert message == value  # plain maps come back as they went


@FUZZ
@given(with_extensions(), st.lists(st.binary(max_size=64), max_size=3))
def test_decode_array_extensions_with_bad_headers(values, extra_parts):
    payload = msgpack.packb(values, use_bin_type=True)
    message = decode_or_reject([payload, *extra_parts])
    for array in (message or {}).values():
        assert isinstance(array, np.ndarray) and array.dtype.str in codec.ALLOWED_DTYPES


@FUZZ
@given(mutated_encodings())
def test_decode_and_validate_mutated_encodings(parts):
    message = decode_or_reject(parts)
    if message is not None:
        validate_or_reject(message)


def test_decode_deeply_nested_payload():
    nested = b"\x81\xa1a" * 5000 + b"\xc0"  # {"a": {"a": ... nil}} 5000 levels deep
    decode_or_reject([nested])


def test_decode_declared_lengths_beyond_the_data():
    for payload in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                    b"\xc6\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x01"):
        assert decode_or_reject([payload]) is None


# --- messages.validate / validate_request ----------------------------------------

@FUZZ
@given(st.dictionaries(field_names, decoded_values, max_size=8))
def test_validate_random_maps(message):
    validate_or_reject(message)


@FUZZ
@given(st.sampled_from(VALID).flatmap(mutated_map))
def test_validate_mutated_messages(message):
    validate_or_reject(message)


@FUZZ
@given(st.sampled_from(VALID).flatmap(lambda m: mutated(m).map(lambda changed: codec.encode(changed))))
def test_validate_mutated_messages_after_a_trip_through_the_codec(parts):
    message = decode_or_reject(parts)
    if message is not None:
        validate_or_reject(message)


@FUZZ
@given(st.dictionaries(field_names, decoded_values, max_size=6)
       | st.sampled_from(VALID_REQUESTS).flatmap(mutated_map))
def test_validate_request_random_and_mutated(request):
    validate_or_reject(request, messages.validate_request)


def test_every_valid_message_and_request_passes():
    for message in VALID:
        assert messages.validate(codec.decode(codec.encode(message))) is not None
    for request in VALID_REQUESTS:
        assert messages.validate_request(codec.decode(codec.encode(request))) is not None


# --- bugs the fuzzing found (fixed) ------------------------------------------------

def rejected(validator, message) -> bool:
    try:
        validator(message)
    except REJECTIONS:
        return True
    return False


@pytest.mark.parametrize("validator, message", [
    (messages.validate, {"type": []}),
    (messages.validate, {"type": {}}),
    (messages.validate_request, {"cmd": []}),
])
def test_unhashable_type_or_cmd_is_a_schema_error(validator, message):
    assert rejected(validator, message)


@pytest.mark.parametrize("message", [
    {**messages.job_end("j1", 1), "schema": np.zeros(2, np.uint8)},
    {**messages.job_end("j1", 1), "status": np.zeros(2, np.uint8)},
    {**messages.track_event("j1", 0, "born", 1), "event": np.zeros(3, np.float32)},
])
def test_array_in_a_scalar_field_is_a_schema_error(message):
    with pytest.raises(SchemaError):
        messages.validate(message)
