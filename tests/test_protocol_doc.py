"""docs/protocol.md says what is sent: checked against bus/messages.py and a recorded run."""
import re

import cv2
import pytest
import zmq

from bus import messages
from bus.client import replay

from conftest import ROOT, VIDEO, Collector, free_port, launch

DOC = (ROOT / "docs" / "protocol.md").read_text()
SMALL_CHECKPOINT = VIDEO.parents[1] / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


def documented(section: str) -> dict[str, str]:
    """{field: presence} from the table under the heading ``### <section>``."""
    body = DOC.split(f"### {section}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", body, re.MULTILINE)
    assert rows, f"no field table under ### {section}"
    return {field: presence.strip() for field, presence in rows}


SECTIONS = {"job_start": "`job_start`", "frame": "`frame`", "track_event": "`track_event`", "job_end": "`job_end`"}


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_documented_fields_are_the_schema(kind):
    spec = messages.SPECS[kind]
    assert set(documented(SECTIONS[kind])) == set(spec.required) | set(spec.optional)


def test_documented_person_fields_are_the_schema():
    assert set(documented("person (an element of `frame.people`)")) == (
        set(messages.PERSON.required) | set(messages.PERSON.optional) - {"appearance"})


def test_documented_angles_and_joints_are_the_code():
    from pose.angles import ANGLE_KEYS
    from pose.skeleton import CANONICAL_JOINTS

    for key in ANGLE_KEYS:
        assert f"`{key}`" in DOC
    assert ", ".join(CANONICAL_JOINTS[:17]) in " ".join(DOC.split())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real HMR 2.0 run with every optional field on, a failed job, and a replay."""
    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(VIDEO))
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), capture.read()[1])
    results, history = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    collector = Collector(results)
    collector.start()
    run = launch(folder, "--results", results, "--history", history, "--wait-subscribers", "1", "--detector",
                 "hmr2", "--checkpoint", SMALL_CHECKPOINT, "--mesh", "--job", "doc-run", "--job-log",
                 tmp_path_factory.mktemp("logs"))
    assert run.returncode == 0, run.stderr
    sent = collector.result()
    failed = Collector(results)
    failed.start()
    launch(folder / "missing.mp4", "--results", results, "--wait-subscribers", "1")
    return sent + failed.result()


def test_recorded_messages_follow_the_page(recorded):
    seen_people = 0
    for message in recorded:
        fields = documented(SECTIONS[message["type"]])
        assert set(message) <= set(fields), f"undocumented fields in {message['type']}"
        always = {f for f, presence in fields.items() if presence == "always"}
        assert always <= set(message), f"{message['type']} lacks {always - set(message)}"
        for person in message.get("people", []):
            person_fields = documented("person (an element of `frame.people`)")
            assert set(person) <= set(person_fields)
            assert {f for f, p in person_fields.items() if p == "always"} <= set(person)
            seen_people += 1
    assert seen_people >= 12
    kinds = {m["type"] for m in recorded}
    assert kinds == set(SECTIONS)


def test_replay_end_follows_the_page(tmp_path):
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    import threading

    from bus.joblog import JobLogs
    from stages.track.history import serve_replay

    server = threading.Thread(target=serve_replay, args=(router, JobLogs(tmp_path, 5)))
    server.start()
    found, end = replay(dealer, "nojob", 3)
    server.join(5)
    history = DOC.split("## History (replay)")[1].split("## Control")[0]
    fields = re.findall(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \|", history, re.MULTILINE)
    assert found == [] and set(end) == {"type", "schema", "job", *fields}
    assert end["next"] == 3 and end["done"] is False
    ctx.destroy(linger=0)
