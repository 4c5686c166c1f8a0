"""What the fuzz tests share: a valid message of every type and valid control requests."""
import numpy as np

from bus import messages
from pose.detection import Detection
from pose.skeleton import CANONICAL_JOINTS

J = len(CANONICAL_JOINTS)


def detection() -> Detection:
    kp3 = np.ones((J, 3), np.float32)
    return Detection(bbox=np.array([1, 2, 30, 40], np.float32), score=0.9,
                     keypoints_2d=np.zeros((J, 3), np.float32), keypoints_3d=kp3,
                     extras={"appearance": np.ones(64, np.float32)})


def valid_messages() -> list[dict]:
    person = messages.person(1, "observed", 0.9, 0, detection(), detection())
    return [
        messages.job_request("j1", "clip.mp4", {"fps": 25}),
        messages.job_start("j1", "clip.mp4", 29.97, 640, 360, 131, options={"detector": "blazepose"}),
        messages.image("j1", 0, 0.0, np.zeros((4, 6, 3), np.uint8)),
        messages.image("j1", 1, 33.3, np.zeros((90, 160, 3), np.uint8)),  # out of band
        messages.image("j1", 2, 66.6, jpeg=b"\xff\xd8\xff\xd9", width=6, height=4),
        messages.image("j1", 3, 99.9, shm={"name": "posebus-1-0123456789abcdef", "slot": 1, "slot_bytes": 72},
                       width=6, height=4),
        messages.detections("j1", 3, 100.0, [detection()], worker="host:1"),
        messages.detections("j1", 4, 133.3, [], error="detector failed"),
        messages.frame("j1", 3, 100.0, [person]),
        messages.track_event("j1", 3, "born", 1),
        messages.job_end("j1", 131),
        messages.job_end("j1", 0, "no such file"),
        messages.progress("j1", 10, 9, 1),
    ]


VALID = valid_messages()
VALID_REQUESTS = [
    {"cmd": "submit", "source": "clip.mp4", "job": "abc", "options": {"fps": 25}},
    {"cmd": "status", "job": "abc"},
    {"cmd": "list"},
    {"cmd": "health"},
]
