import msgpack
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bus import codec


def roundtrip(message, **kwargs):
    return codec.decode(codec.encode(message, **kwargs))


def test_small_arrays_travel_inline_and_large_ones_out_of_band():
    small = np.arange(12, dtype=np.float32).reshape(4, 3)
    large = np.ones((1088, 1920, 3), np.uint8)
    parts = codec.encode({"a": small, "b": large})
    assert len(parts) == 2 and len(parts[1]) == large.nbytes
    back = codec.decode(parts)
    np.testing.assert_array_equal(back["a"], small)
    np.testing.assert_array_equal(back["b"], large)
    assert back["a"].dtype == np.float32 and back["b"].shape == (1088, 1920, 3)


def test_out_of_band_arrays_are_not_copied_on_receive():
    import zmq

    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://x"), b.connect("inproc://x")
    a.send_multipart(codec.encode({"img": np.zeros((512, 512, 3), np.uint8)}), copy=False)
    frames = b.recv_multipart(copy=False)
    image = codec.decode(frames)["img"]
    assert not image.flags.owndata and np.shares_memory(image, np.frombuffer(frames[1].buffer, np.uint8))
    ctx.destroy()


def test_big_endian_and_non_contiguous_arrays_arrive_as_little_endian_values():
    data = np.arange(10, dtype=">f8")[::2]
    back = roundtrip({"x": data})["x"]
    assert back.dtype.str == "<f8"
    np.testing.assert_array_equal(back, [0, 2, 4, 6, 8])


def test_numpy_scalars_and_tuples_become_plain_values():
    assert roundtrip({"a": np.float32(1.5), "b": (1, 2)}) == {"a": 1.5, "b": [1, 2]}


def test_object_arrays_are_refused():
    with pytest.raises(TypeError):
        codec.encode({"x": np.array([object()])})


def _ext(header):
    return msgpack.packb({"x": msgpack.ExtType(codec.EXT_NDARRAY, msgpack.packb(header))})


@pytest.mark.parametrize("parts, reason", [
    ([], "empty"),
    ([b"\xc1"], "not a msgpack"),
    ([msgpack.packb([1, 2])], "not a map"),
    ([msgpack.packb({"x": msgpack.ExtType(9, b"")})], "unknown extension"),
    ([_ext(["|O", [1], b"x"])], "not allowed"),
    ([_ext(["<f4", [2], b"abc"])], "does not match"),
    ([_ext(["<f4", [-1], b""])], "bad array shape"),
    ([_ext(["<f4", [1], 0])], "missing part"),
])
def test_malformed_messages_raise_codec_error(parts, reason):
    with pytest.raises(codec.CodecError, match=reason):
        codec.decode(parts)


def test_size_limit():
    with pytest.raises(codec.CodecError, match="exceeds"):
        codec.decode(codec.encode({"x": np.zeros(1000, np.uint8)}), max_bytes=100)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_random_bytes_never_crash_the_decoder(parts):
    try:
        codec.decode(parts)
    except codec.CodecError:
        pass


def test_json_compatible_turns_nan_into_null():
    assert codec.to_json_compatible({"a": np.array([[1.0, np.nan]], np.float32)}) == {"a": [[1.0, None]]}
