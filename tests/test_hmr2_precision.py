"""HMR 2.0's --precision: each mode within its documented error bound on the fixture, on this CPU."""
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.base import FrameImage
from detectors.hmr2 import precision
from detectors.hmr2.checkpoint import load_hmr2
from detectors.hmr2.detector import Hmr2Detector, PersonBoxes

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"


@pytest.fixture(scope="module")
def crops():
    """The fixture's crops: two real ones of vid.mp4 and a noise image (io.npz), and four real ones."""
    return torch.from_numpy(np.concatenate([np.load(FIXTURES / "io.npz")["img"],
                                            np.load(FIXTURES / "preprocess.npz")["img"]]))


@pytest.fixture(scope="module")
def reference(crops):
    with torch.inference_mode():
        return load_hmr2(CHECKPOINT)(crops)


@pytest.mark.parametrize("mode", precision.PRECISIONS)
def test_each_precision_stays_within_its_bound_on_the_fixture(mode, crops, reference):
    model = precision.prepare(load_hmr2(CHECKPOINT), mode)
    with torch.inference_mode(), precision.autocast(mode, torch.device("cpu")):
        outputs = model(crops)
    measured = precision.errors(reference, outputs)
    assert precision.within(precision.ERROR_BOUNDS[mode], measured), (mode, measured)
    if mode != "fp32":  # the mode really changes the arithmetic
        assert measured["keypoints_m"] > 0
    for key in ("pred_keypoints_3d", "pred_vertices", "pred_cam_t"):
        assert outputs[key].dtype == torch.float32 and torch.isfinite(outputs[key]).all()


def test_fp32_is_the_reference_arithmetic(crops):
    """fp32 changes nothing: the parity fixture's own outputs."""
    io = np.load(FIXTURES / "io.npz")
    model = precision.prepare(load_hmr2(CHECKPOINT), "fp32")
    with torch.inference_mode(), precision.autocast("fp32", torch.device("cpu")):
        outputs = model(crops[:3])
    np.testing.assert_allclose(outputs["pred_vertices"].numpy(), io["pred_vertices"], atol=1e-5)


def test_defaults_per_device_and_refusals():
    assert precision.resolve("auto", torch.device("cpu")) == precision.DEFAULTS["cpu"] == "int8"
    assert precision.resolve("auto", torch.device("cuda")) == precision.DEFAULTS["cuda"] == "bf16"
    assert precision.resolve("bf16", torch.device("cuda:1")) == "bf16"
    with pytest.raises(ValueError, match="CPU only"):
        precision.resolve("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown precision"):
        precision.resolve("fp16", torch.device("cpu"))
    # The CPU default is within its bound (the test above) and each default has a bound.
    assert set(precision.DEFAULTS.values()) <= set(precision.ERROR_BOUNDS)


class Runner:
    def __call__(self, frames):
        return [PersonBoxes(np.float32([[795, 200, 1125, 1000]]), np.float32([1.0])) for _ in frames]

    def close(self):
        pass


def test_the_detector_runs_in_the_precision_asked(crops):
    rng = np.random.default_rng(0)
    frames = [FrameImage("j", i, i * 33.3, rng.integers(0, 255, (1088, 1920, 3), np.uint8)) for i in range(2)]
    exact = Hmr2Detector(CHECKPOINT, box_source=Runner())
    quantised = Hmr2Detector(CHECKPOINT, box_source=Runner(), precision="int8")
    assert (exact.precision, quantised.precision) == ("fp32", "int8")
    assert Hmr2Detector(CHECKPOINT, box_source=Runner(), precision="auto").precision == "int8"
    bound = precision.ERROR_BOUNDS["int8"]
    for a, b in zip(exact.detect(frames), quantised.detect(frames)):
        native_a, native_b = a[0].extras["keypoints_3d_native"], b[0].extras["keypoints_3d_native"]
        assert 0 < np.abs(native_a - native_b).max() <= bound.keypoints_m
