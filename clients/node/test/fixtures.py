"""Print decode fixtures as JSON: messages encoded by bus/codec.py, with the values they carry.

Run with the project's Python (numpy, msgpack) from anywhere; the test sets PYTHON.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bus import codec  # noqa: E402


# How Node sees each dtype's values: half floats widened to float32, booleans as 0/1 bytes.
NODE_VALUES = {np.dtype("<f2"): np.float32, np.dtype("|b1"): np.uint8}


def expected(array: np.ndarray) -> dict:
    flat = array.astype(NODE_VALUES.get(array.dtype, array.dtype)).ravel().tolist()
    if array.dtype.itemsize == 8 and array.dtype.kind in "iu":
        flat = [str(v) for v in flat]  # JSON numbers lose 64-bit integers
    return {"dtype": codec._dtype_str(array.dtype), "shape": list(array.shape), "values": flat}


def case(name: str, message: dict, arrays: dict, out_of_band_bytes: int = codec.OUT_OF_BAND_BYTES) -> dict:
    parts = codec.encode(message, out_of_band_bytes)
    return {"name": name, "parts": [bytes(p).hex() for p in parts],
            "arrays": {path: expected(a) for path, a in arrays.items()}}


rng = np.random.default_rng(7)
small = {
    dtype: (np.arange(6).reshape(2, 3) * 3 - 5).astype(dtype) if dtype[1] in "iu"
    else np.array([[0, 1], [1, 0]], dtype) if dtype == "|b1"
    else np.array([0.0, -0.5, 1.5, 65504.0, 2.0**-24, 3.14159], dtype).reshape(2, 3)
    for dtype in sorted(codec.ALLOWED_DTYPES)
}
keypoints = rng.normal(size=(25, 3)).astype("<f4")
bbox = np.array([10.5, 20.25, 100.0, 200.0], "<f4")
vertices = rng.normal(size=(6890, 3)).astype("<f4")
faces = rng.integers(0, 6890, size=(13776, 3)).astype("<i4")

cases = [
    case("every dtype inline", {"arrays": list(small.values())},
         {f"arrays.{i}": a for i, a in enumerate(small.values())}),
    case("every dtype out of band", {"arrays": list(small.values())},
         {f"arrays.{i}": a for i, a in enumerate(small.values())}, out_of_band_bytes=0),
    case("frame with inline keypoints",
         {"type": "frame", "schema": 1, "job": "j", "index": 7, "pts_ms": 233.3,
          "people": [{"track_id": 1, "bbox": bbox, "keypoints_3d": keypoints,
                      "joint_angles": {"leftKnee": 170.5, "rightKnee": None}}]},
         {"people.0.bbox": bbox, "people.0.keypoints_3d": keypoints}),
    case("mesh out of band", {"type": "frame", "vertices": vertices, "faces": faces, "keypoints": keypoints},
         {"vertices": vertices, "faces": faces, "keypoints": keypoints}),
]
json.dump(cases, sys.stdout)
