import numpy as np
import pytest

from bus import messages
from bus.schema import SchemaError
from pose.detection import Detection
from pose.skeleton import CANONICAL_JOINTS

J = len(CANONICAL_JOINTS)


def detection(**overrides):
    kp3 = np.zeros((J, 3), np.float32)
    kp3[:, 2] = 3.0
    fields = dict(bbox=np.array([1, 2, 3, 4], np.float32), score=0.9,
                  keypoints_2d=np.zeros((J, 3), np.float32), keypoints_3d=kp3)
    return Detection(**{**fields, **overrides})


def test_every_builder_produces_a_valid_message():
    built = [
        messages.job_request("j1", "clip.mp4", {"fps": 25}),
        messages.job_start("j1", "clip.mp4", 29.97, 640, 360, 131),
        messages.image("j1", 0, 0.0, np.zeros((4, 6, 3), np.uint8)),
        messages.image("j1", 0, 0.0, jpeg=b"\xff\xd8", width=6, height=4),
        messages.image("j1", 0, 0.0, shm={"name": "posebus-1-0123456789abcdef", "slot": 0, "slot_bytes": 72},
                       width=6, height=4),
        messages.detections("j1", 3, 100.0, [detection()]),
        messages.frame("j1", 3, 100.0, [messages.person(1, "observed", 0.9, 0, detection())]),
        messages.job_end("j1", 131),
        messages.job_end("j1", 0, "no such file"),
        messages.progress("j1", 10, 9, 1),
    ]
    for message in built:
        assert messages.validate(message) is message


def test_person_carries_named_angles():
    person = messages.person(7, "observed", 0.8, 0, detection())
    assert set(person["joint_angles"]) == {"leftKnee", "rightKnee", "leftHip", "rightHip", "leftElbow",
                                           "rightElbow", "leftShoulder", "rightShoulder", "spine"}


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: m.pop("index"), "index is missing"),
    (lambda m: m.update(schema=99), "schema version"),
    (lambda m: m.update(type="nope"), "unknown message type"),
    (lambda m: m.update(job="../etc"), "not a valid job id"),
    (lambda m: m["people"][0].update(keypoints_2d=np.zeros((3, 3), np.float32)), "shape"),
    (lambda m: m["people"][0].update(state="ghost"), "must be one of"),
    (lambda m: m["people"][0].update(bbox=np.zeros(4, np.float64)), "dtype"),
    (lambda m: m.update(surprise=1), "not a known field"),
])
def test_invalid_frames_are_refused_with_the_field_named(mutate, reason):
    message = messages.frame("j1", 0, 0.0, [messages.person(1, "observed", 0.9, 0, detection())])
    mutate(message)
    with pytest.raises(SchemaError, match=reason):
        messages.validate(message)


def test_expected_types_are_enforced():
    with pytest.raises(SchemaError, match="unexpected"):
        messages.validate(messages.progress("j", 1, 1, 0), expected=("frame",))


def test_image_needs_exactly_one_payload():
    message = messages.image("j1", 0, 0.0, np.zeros((4, 6, 3), np.uint8))
    message["jpeg"] = b"x"
    with pytest.raises(SchemaError, match="exactly one"):
        messages.validate(message)


def test_topics_let_subscribers_filter_by_kind_and_job():
    assert messages.topic(messages.job_end("abc", 1)) == b"abc/job_end"


def test_control_requests():
    assert messages.validate_request({"cmd": "submit", "source": "a.mp4"})
    with pytest.raises(SchemaError, match="unknown command"):
        messages.validate_request({"cmd": "explode"})
    with pytest.raises(SchemaError, match="source is missing"):
        messages.validate_request({"cmd": "submit"})


def test_job_end_lists_result_files_by_output():
    end = {**messages.job_end("j", 3), "outputs": {"app_json": "/r/j.json", "gltf": ["/r/j.track1.glb"]},
           "output_errors": {"overlay": "OSError: disk full"}}
    assert messages.validate(end) is end
    with pytest.raises(SchemaError, match="outputs.app_json"):
        messages.validate({**end, "outputs": {"app_json": 3}})
    with pytest.raises(SchemaError, match="output_errors.overlay"):
        messages.validate({**end, "output_errors": {"overlay": ["not one line"]}})
