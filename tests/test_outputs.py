"""The app's JSON document and the overlay video: synthetic messages, then real runs of the pipeline."""
from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlparse

import av
import cv2
import numpy as np
import pytest

from bus import messages
from outputs import app_json, overlay
from outputs.app_json import app_document, camera_of, write_app_json
from outputs.atomic import replacing
from outputs.overlay import STATE_COLOURS, draw_frame, mesh_silhouette, render_overlay
from outputs.report import read_messages
from pose.angles import ANGLE_KEYS
from pose.skeleton import CANONICAL_JOINTS, JOINT_INDEX as J

from conftest import SHARED, VIDEO, free_port, launch

COCO_17 = CANONICAL_JOINTS[:17]
CAMEL_CASE = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)*$")
HMR2_CHECKPOINT = SHARED / "fixtures" / "hmr2" / "small_checkpoint.ckpt"
INTRINSICS = {"fx": 1000.0, "fy": 1000.0, "cx": 320.0, "cy": 180.0}


# --- synthetic messages -------------------------------------------------------

def standing_person(state: str = "observed", track_id: int = 1) -> dict:
    """A person standing 5 m in front of a 640x360 camera (keypoints_2d in px, keypoints_3d in m)."""
    keypoints_3d = np.full((len(CANONICAL_JOINTS), 3), np.nan)
    for name, (x, y) in {"left_shoulder": (0.2, -0.5), "right_shoulder": (-0.2, -0.5),
                         "left_hip": (0.1, 0.0), "right_hip": (-0.1, 0.0), "pelvis": (0.0, 0.0),
                         "left_knee": (0.1, 0.45), "right_knee": (-0.1, 0.45),
                         "left_ankle": (0.1, 0.9), "right_ankle": (-0.1, 0.9)}.items():
        keypoints_3d[J[name]] = (x, y - 0.2, 5.0)
    pixels = 1000.0 * keypoints_3d[:, :2] / keypoints_3d[:, 2:] + (320.0, 180.0)
    confidence = np.where(np.isnan(pixels[:, 0]), 0.0, 0.9)
    return {"track_id": track_id, "state": state, "confidence": 0.9, "frames_since_seen": 0,
            "bbox": np.array([250.0, 60.0, 140.0, 240.0]), "keypoints_2d": np.column_stack([pixels, confidence]),
            "keypoints_3d": keypoints_3d, "joint_angles": {key: 180.0 for key in ANGLE_KEYS}}


def synthetic_job(people_per_frame: list[list[dict]], frames: int | None = None) -> list[dict]:
    start = messages.job_start("synthetic", "clip.mp4", 29.97, 640, 360, len(people_per_frame),
                               detector="blazepose", intrinsics=INTRINSICS,
                               joints={"keypoints_3d": list(CANONICAL_JOINTS)}, angles=list(ANGLE_KEYS))
    body = [messages.frame("synthetic", i, i * 1000 / 29.97, people) for i, people in enumerate(people_per_frame)]
    return [start, *body, messages.job_end("synthetic", len(body) if frames is None else frames)]


def test_document_keeps_true_fps_pts_and_every_frame():
    document = app_document(synthetic_job([[standing_person()]] * 3), video_id="v1")
    assert (document["videoId"], document["fps"], document["frameCount"]) == ("v1", 29.97, 3)
    assert document["resolution"] == [640, 360] and document["duration"] == pytest.approx(3 / 29.97)
    assert [f["frameNumber"] for f in document["frames"]] == [0, 1, 2]
    assert document["frames"][2]["timestamp"] == pytest.approx(2 / 29.97)
    assert document["metadata"]["jointNames"] == list(CANONICAL_JOINTS)


def test_document_refuses_gaps_and_failed_jobs():
    job = synthetic_job([[standing_person()]] * 3)
    with pytest.raises(ValueError, match="not 0..2"):
        app_document([m for m in job if m.get("index") != 1])  # a dropped frame is never renumbered
    with pytest.raises(ValueError, match="did not end cleanly"):
        app_document([*job[:-1], messages.job_end("synthetic", 3, error="detect crashed")])


def test_frames_before_the_first_person_hold_it_flagged_in_the_document_only():
    rider = standing_person()
    job = synthetic_job([[], [], [rider], [standing_person("predicted")]])
    document = app_document(job)
    persons = [frame["persons"] for frame in document["frames"]]
    assert all(len(people) == 1 for people in persons)
    assert [(p[0]["trackingState"], p[0]["backfilled"], p[0]["framesSinceSeen"]) for p in persons] == [
        ("held", True, 2), ("held", True, 1), ("observed", False, 0), ("predicted", False, 0)]
    assert [p[0]["confidence"] for p in persons[:3]] == pytest.approx([0.9 * 0.81, 0.9 * 0.9, 0.9])
    assert persons[0][0]["keypoints3d"] == persons[2][0]["keypoints3d"]  # the first observation, held
    assert {key: document["metadata"][key] for key in ("personSeen", "firstPersonFrame", "backfilledFrames")} == {
        "personSeen": True, "firstPersonFrame": 2, "backfilledFrames": 2}
    assert job[1]["people"] == [] and "backfilled" not in rider  # the messages (the live stream's) are untouched


def test_a_job_where_nobody_is_seen_says_so():
    document = app_document(synthetic_job([[], [], []]))
    assert all(frame["persons"] == [] for frame in document["frames"])
    assert {key: document["metadata"][key] for key in ("personSeen", "firstPersonFrame", "backfilledFrames")} == {
        "personSeen": False, "firstPersonFrame": None, "backfilledFrames": 0}


def test_blazepose_camera_is_the_pelvis_with_the_job_focal_length():
    person = standing_person()
    camera = app_document(synthetic_job([[person]]))["frames"][0]["persons"][0]["camera"]
    assert camera == {"tx": 0.0, "ty": -0.2, "tz": 5.0, "focalLength": 1000.0, "principalPoint": [320.0, 180.0]}
    person["keypoints_3d"][J["pelvis"]] = np.nan
    assert camera_of(person, person["keypoints_3d"], INTRINSICS) is None


def test_hmr2_camera_is_its_translation():
    person = {**standing_person(), "camera": {"translation": np.array([0.5, -0.1, 40.0]), "focal_length": 5000.0,
                                              "principal_point": np.array([300.0, 200.0])}}
    assert camera_of(person, person["keypoints_3d"], INTRINSICS) == {
        "tx": 0.5, "ty": -0.1, "tz": 40.0, "focalLength": 5000.0, "principalPoint": [300.0, 200.0]}


def test_missing_joints_are_listed_with_null_position():
    person = app_document(synthetic_job([[standing_person()]]))["frames"][0]["persons"][0]
    assert [j["name"] for j in person["keypoints3d"]] == list(CANONICAL_JOINTS)
    nose = person["keypoints3d"][J["nose"]]
    assert nose == {"name": "nose", "position": None, "confidence": 0.0}
    assert person["keypoints2d"][J["left_knee"]] == {"name": "left_knee", "position": {"x": 340.0, "y": 230.0},
                                                    "confidence": 0.9}
    assert (person["smpl"], person["meshVertices"], person["meshFaces"]) == (None, None, None)


def test_write_app_json_is_compact_and_has_no_nan(tmp_path):
    path = write_app_json(synthetic_job([[standing_person()]]), tmp_path / "app.json")
    text = path.read_text()
    assert '": ' not in text and "\n" not in text

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON")

    assert json.loads(text, parse_constant=refuse)["frames"][0]["persons"][0]["keypoints2d"][0]["position"] is None


@pytest.mark.parametrize("state", list(STATE_COLOURS))
def test_each_state_is_drawn_in_its_colour(state):
    person = standing_person(state)
    canvas = draw_frame(np.zeros((360, 640, 3), np.uint8), messages.frame("synthetic", 0, 0.0, [person]))
    x, y = person["keypoints_2d"][J["left_knee"], :2].astype(int)
    assert tuple(canvas[y, x]) == STATE_COLOURS[state]
    x, y = (person["keypoints_2d"][J["left_hip"], :2] + person["keypoints_2d"][J["left_knee"], :2]).astype(int) // 2
    assert tuple(canvas[y, x]) == STATE_COLOURS[state]  # the thigh bone


def test_legend_shows_every_state_colour():
    canvas = draw_frame(np.zeros((360, 640, 3), np.uint8), messages.frame("synthetic", 0, 0.0, []))
    corner = canvas[:120, :120].reshape(-1, 3)
    for colour in STATE_COLOURS.values():
        assert (corner == colour).all(axis=1).any()


def test_mesh_silhouette_fills_triangles_or_the_hull():
    # Two thin triangles 2 m apart, 10 m away: the hull spans the gap, the faces do not.
    vertices = np.array([[-1.0, -0.5, 0], [-0.9, 0.5, 0], [-1.0, 0.5, 0], [1.0, -0.5, 0], [0.9, 0.5, 0], [1.0, 0.5, 0]])
    camera = {"translation": [0.0, 0.0, 10.0], "focal_length": 100.0, "principal_point": [32.0, 18.0]}
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    with_faces = mesh_silhouette(vertices, camera, (36, 64), faces)
    hull = mesh_silhouette(vertices, camera, (36, 64))
    assert with_faces[20, 22] and with_faces[20, 42] and not with_faces[18, 32]
    assert hull[18, 32] and hull.sum() > 3 * with_faces.sum()
    behind = {**camera, "translation": [0.0, 0.0, -10.0]}
    assert not mesh_silhouette(vertices, behind, (36, 64), faces).any()


# --- real runs ------------------------------------------------------------------

class Run(NamedTuple):
    source: Path
    results: Path  # the --out file
    messages: list[dict]


def run_pipeline(source: Path, out: Path, *args) -> Run:
    result = launch(source, "--out", out, "--job", "vid", "--results", f"tcp://127.0.0.1:{free_port()}", *args)
    assert result.returncode == 0, result.stderr
    return Run(source, out / "vid.jsonl", read_messages(out / "vid.jsonl"))


@pytest.fixture(scope="module")
def blazepose_run(tmp_path_factory) -> Run:
    """The clip through the pipeline, which also writes its app document and overlay beside the results."""
    out = tmp_path_factory.mktemp("blazepose")
    return run_pipeline(VIDEO, out, "--app-json", out, "--overlay", out)


@pytest.fixture(scope="module")
def hmr2_run(tmp_path_factory) -> Run:
    """HMR 2.0 (the small test checkpoint) with meshes, on the clip's first 20 frames as an image folder."""
    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(VIDEO))
    for index in range(20):
        ok, image = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), image)
    capture.release()
    return run_pipeline(folder, tmp_path_factory.mktemp("hmr2"), "--detector", "hmr2",
                                "--checkpoint", HMR2_CHECKPOINT, "--mesh")


def test_real_document_has_a_person_on_each_decoded_frame(blazepose_run):
    document = app_document(blazepose_run.messages)
    assert (document["fps"], document["resolution"], document["frameCount"]) == (30.0, [1920, 1088], 180)
    assert [f["frameNumber"] for f in document["frames"]] == list(range(180))
    assert all(f["persons"] and f["persons"][0]["personId"] == 1 for f in document["frames"])
    timestamps = [f["timestamp"] for f in document["frames"]]
    assert all(b > a for a, b in zip(timestamps, timestamps[1:]))


def test_real_document_names_joints_where_they_are(blazepose_run):
    person = app_document(blazepose_run.messages)["frames"][90]["persons"][0]
    for joints in (person["keypoints2d"], person["keypoints3d"]):
        assert set(COCO_17) <= {j["name"] for j in joints if j["position"] is not None}
    position = {j["name"]: np.array(list(j["position"].values())) for j in person["keypoints2d"] if j["position"]}
    hip, knee, ankle = position["left_hip"], position["left_knee"], position["left_ankle"]
    along = np.dot(knee - hip, ankle - hip) / np.dot(ankle - hip, ankle - hip)
    thigh, shin = np.linalg.norm(knee - hip), np.linalg.norm(ankle - knee)
    assert 0.2 < along < 0.8 and 0.3 < thigh / (thigh + shin) < 0.7
    assert set(person["jointAngles"]) == set(ANGLE_KEYS) and all(CAMEL_CASE.match(k) for k in person["jointAngles"])
    pelvis = next(j["position"] for j in person["keypoints3d"] if j["name"] == "pelvis")
    assert [person["camera"][k] for k in ("tx", "ty", "tz")] == [pelvis["x"], pelvis["y"], pelvis["z"]]


def test_real_mesh_is_the_same_size_on_every_frame(hmr2_run):
    document = app_document(hmr2_run.messages)
    people = [f["persons"][0] for f in document["frames"]]
    assert len(people) == 20
    faces = people[0]["meshFaces"]
    assert len(faces) == 13776 and all(len(face) == 3 for face in faces)
    for person in people:
        assert len(person["meshVertices"]) == 6890 and all(len(v) == 3 for v in person["meshVertices"])
        assert person["meshFaces"] == faces
        assert np.shape(person["smpl"]["bodyPose"]) == (23, 3, 3) and len(person["smpl"]["betas"]) == 10
    lean = app_document(hmr2_run.messages, include_mesh=False)["frames"][0]["persons"][0]
    assert lean["meshVertices"] is None and lean["meshFaces"] is None and lean["smpl"] is not None


def test_cli_writes_the_document(blazepose_run, tmp_path):
    assert app_json.main([str(blazepose_run.results), "-o", str(tmp_path / "app.json")]) == 0
    assert json.loads((tmp_path / "app.json").read_text())["frameCount"] == 180


def read_video(path, keep: int) -> tuple[int, np.ndarray]:
    """Decode the whole video: (its frame count, frame ``keep``); holding 180 HD frames would take 1 GB."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    count, kept = 0, None
    while (frame := capture.read())[0]:
        kept = frame[1] if count == keep else kept
        count += 1
    capture.release()
    return count, kept


def test_the_launcher_waits_for_the_files_the_track_stage_writes(blazepose_run):
    """Single-job mode stops the stages after the job: the track stage must first finish writing them."""
    written = json.loads((blazepose_run.results.parent / "vid.json").read_text())
    assert written == json.loads(json.dumps(app_document(blazepose_run.messages)))
    capture = cv2.VideoCapture(str(blazepose_run.results.parent / "vid.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 180 and capture.read()[0]
    capture.release()


def test_overlay_has_every_frame_with_the_skeleton_drawn(blazepose_run, tmp_path):
    rendered = render_overlay(VIDEO, blazepose_run.messages, tmp_path / "overlay.mp4")
    assert rendered.frames == 180 and rendered.codec == "h264"
    count, drawn = read_video(tmp_path / "overlay.mp4", keep=90)
    assert count == 180 and drawn.shape == (1088, 1920, 3)
    drawn = drawn.astype(int)
    source = read_video(VIDEO, keep=90)[1].astype(int)
    frame = next(m for m in blazepose_run.messages if m["type"] == "frame" and m["index"] == 90)
    x, y = np.round(frame["people"][0]["keypoints_2d"][J["left_knee"]][:2]).astype(int)
    near_knee = np.abs(drawn[y - 4:y + 5, x - 4:x + 5] - source[y - 4:y + 5, x - 4:x + 5]).mean()
    far_corner = np.abs(drawn[-60:, -60:] - source[-60:, -60:]).mean()  # only the codec's loss
    assert near_knee > 40 and far_corner < 10


def test_overlay_cli_draws_the_mesh_of_an_image_folder(hmr2_run, tmp_path):
    start, first = hmr2_run.messages[0], next(m for m in hmr2_run.messages if m["type"] == "frame")
    output = tmp_path / "overlay.mp4"
    assert overlay.main([str(hmr2_run.source), str(hmr2_run.results), "-o", str(output)]) == 0
    count, drawn = read_video(output, keep=0)
    assert count == 20
    person = first["people"][0]
    silhouette = mesh_silhouette(np.array(person["vertices"]), person["camera"], (1088, 1920),
                                 np.array(start["mesh_faces"]))
    tinted = drawn[silhouette].astype(int) - cv2.imread(str(hmr2_run.source / "0000.jpg"))[silhouette]
    assert silhouette.sum() > 1000 and np.abs(tinted).mean() > 15


# --- the overlay in a browser ------------------------------------------------------------

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

# Plays the video to its end, then reports what it saw to the page's server: duration, size, frames decoded,
# and the mean of the last frame's pixels. The <img> that the server holds back keeps the page loading
# (and headless Chromium running) until then.
PLAYER = """<!doctype html><html><body><video id="v" muted playsinline preload="auto" src="/video.mp4"></video>
<canvas id="c"></canvas><script>
const v = document.getElementById("v"), found = {};
const report = () => { new Image().src = "/report?r=" + encodeURIComponent(JSON.stringify(found)); };
function mean() {
  const c = document.getElementById("c");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
  return sum / (px.length / 4) / 3;
}
v.addEventListener("error", () => { found.error = `${v.error.code} ${v.error.message}`; report(); });
v.addEventListener("loadedmetadata", () => {
  found.duration = v.duration;
  found.size = [v.videoWidth, v.videoHeight];
});
v.addEventListener("ended", () => {
  Object.assign(found, {ended: v.currentTime, lastMean: mean(), decoded: v.getVideoPlaybackQuality().totalVideoFrames});
  report();
});
v.play().catch((e) => { found.error = e.message; report(); });
</script><img src="/hold"></body></html>"""


def play_in_chromium(video: Path, profile: Path) -> dict:
    """Serve ``video`` in PLAYER over HTTP to headless Chromium; what the page reported."""
    served = {"/": (PLAYER.encode(), "text/html"), "/video.mp4": (video.read_bytes(), "video/mp4")}
    found, reported = {}, threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/report":
                found.update(json.loads(parse_qs(url.query)["r"][0]))
                reported.set()
            elif url.path == "/hold":
                reported.wait(90)
            body, kind = served.get(url.path, (b"", "text/plain"))
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
                        "--autoplay-policy=no-user-gesture-required", "--dump-dom",
                        f"http://127.0.0.1:{server.server_port}/"], capture_output=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert reported.is_set(), "the page reported nothing"
    return found


def test_pipeline_overlay_is_h264_with_its_index_first(blazepose_run):
    path = blazepose_run.results.parent / "vid.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (stream.width, stream.height, stream.average_rate) == (1920, 1088, 30)
        assert sum(1 for _ in container.decode(stream)) == 180
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # faststart: a browser can play while it downloads


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_pipeline_overlay_plays_to_its_end_in_chromium(blazepose_run, tmp_path):
    path = blazepose_run.results.parent / "vid.mp4"
    found = play_in_chromium(path, tmp_path / "profile")
    assert "error" not in found, found["error"]
    assert (found["duration"], found["size"], found["ended"], found["decoded"]) == (6, [1920, 1088], 6, 180)
    _, last = read_video(path, keep=179)
    assert abs(found["lastMean"] - last.mean()) < 2  # the picture Chromium decoded is the overlay's last frame


def test_a_result_file_is_in_place_whole_or_not_at_all(tmp_path):
    target = tmp_path / "clip.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as temporary:
        temporary.write_text("half of the new")
        assert temporary.parent == tmp_path and temporary.name.startswith(".clip.json.")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["clip.json"]
    with replacing(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["clip.json"]
    assert target.stat().st_mode & 0o044  # readable by others as open() would make it, not mkstemp's 0600
