"""Second looks: crops and tiles map poses back to the frame, the followed person is looked for where expected
(turned when lying), a frame with nobody is searched in tiles every few frames, implausible poses never pass."""
import numpy as np

from detectors.base import FrameImage
from detectors.blazepose import Pose, pose_detection
from detectors.second_look import Follow, SecondLook, crop_view, tile_views
from pose.skeleton import BLAZEPOSE_JOINTS

# A standing person in a unit box (x right, y down, 0-1), BlazePose's 33 landmarks.
_PARTS = {
    "nose": (0.5, 0.06), "eye": (0.03, 0.04), "ear": (0.07, 0.05), "mouth": (0.02, 0.09),
    "shoulder": (0.2, 0.2), "elbow": (0.27, 0.36), "wrist": (0.3, 0.5), "pinky": (0.31, 0.54), "index": (0.3, 0.55),
    "thumb": (0.28, 0.53), "hip": (0.1, 0.52), "knee": (0.12, 0.75), "ankle": (0.12, 0.95), "heel": (0.12, 0.98),
    "foot_index": (0.16, 1.0),
}


def _unit(name: str) -> tuple[float, float]:
    if name == "nose":
        return _PARTS["nose"]
    side, _, part = name.partition("_")
    part = part.replace("_inner", "").replace("_outer", "")
    if side == "mouth":
        side, part = part, "mouth"
    dx, y = _PARTS[part]
    return 0.5 + (dx if side == "left" else -dx), y


UNIT = np.array([_unit(name) for name in BLAZEPOSE_JOINTS])


def standing(x: float, y: float, w: float, h: float, score: float = 0.9) -> Pose:
    """A plausible standing Pose filling the box x, y, w, h (image px)."""
    image = np.column_stack([x + UNIT[:, 0] * w, y + UNIT[:, 1] * h, np.full(33, score), np.ones(33)])
    world = np.column_stack([(UNIT[:, 0] - 0.5) * 0.6, (UNIT[:, 1] - 0.52) * 1.7, np.zeros(33)])
    return Pose(image.astype(np.float32), world.astype(np.float32), score)


class RectangleFinder:
    """A pose model that sees a person in every bright rectangle taller than wide (so not one lying down),
    and nothing else; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image: np.ndarray) -> list[Pose]:
        self.calls += 1
        ys, xs = np.nonzero(image[..., 0] > 128)
        if len(xs) < 20:
            return []
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        return [standing(x0, y0, x1 - x0, y1 - y0)] if y1 - y0 > 1.3 * (x1 - x0) else []


def frame_with(job: str, index: int, box=None, size=(640, 360)) -> FrameImage:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    if box is not None:
        x, y, w, h = box
        image[y:y + h, x:x + w] = 255
    return FrameImage(job, index, index * 33.3, image)


def detection(box, width=640, height=360):
    return pose_detection(standing(*box), width, height)


def test_a_turned_crop_maps_its_pose_back_onto_the_frame():
    pose = standing(100, 50, 40, 120)
    for rotation in (0, 90, 180, 270):
        view = crop_view((120, 110), 300, rotation)
        in_view = Pose(pose.image.copy(), pose.world.copy(), pose.score)
        matrix = view.matrix
        in_view.image[:, :2] = pose.image[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        in_view.world[:, :2] = pose.world[:, :2] @ (matrix[:, :2] / np.sqrt(np.linalg.det(matrix[:, :2]))).T
        back = view.to_frame(in_view)
        np.testing.assert_allclose(back.image, pose.image, atol=1e-3)
        np.testing.assert_allclose(back.world, pose.world, atol=1e-5)  # the metric body turns back too


def test_tiles_cover_the_frame_with_overlap():
    views = tile_views(640, 360, 3)
    assert len(views) == 9 and all(max(v.size) == 256 for v in views)
    corners = [np.round(np.linalg.solve(v.matrix[:, :2], -v.matrix[:, 2])) for v in views]
    assert [tuple(c) for c in corners[:3]] == [(0, 0), (187, 0), (373, 0)]  # tiles 267 px wide, 80 overlapping
    last = views[-1]
    assert np.allclose(np.linalg.solve(last.matrix[:, :2], np.array(last.size) - last.matrix[:, 2]), (640, 360), atol=1)


def test_the_expected_box_moves_on_at_the_smoothed_velocity_and_expires():
    follow = Follow()
    assert follow.expected(5, 30) is None
    follow.saw(10, np.array([100, 100, 20, 40]))
    follow.saw(12, np.array([110, 96, 20, 40]))  # 5 px/frame right, 2 up: smoothed to 0.6 of that
    box, unseen = follow.expected(14, 30)
    assert unseen == 2 and np.allclose(box, [110 + 2 * 3, 96 - 2 * 1.2, 20, 40])
    assert np.allclose(follow.expected(20, 30)[0], [110 + 3 * 3, 96 - 3 * 1.2, 20, 40])  # 3 frames at most
    assert follow.expected(43, 30) is None
    follow.saw(13, np.array([0, 0, 40, 80]))  # a pose box twice the size: the size moves part way, the
    assert np.allclose(follow.box[2:], [32, 64])  # centre steps at most 0.3 x its size
    assert np.all(np.abs(follow.velocity) <= 0.4 * 0.6 * 3 + 0.6 * 0.3 * 80)


def test_a_person_the_detector_misses_is_found_where_expected_even_lying_down():
    finder = RectangleFinder()
    look = SecondLook(finder, search_every=5)
    seen = look.refine(frame_with("a", 0, (300, 100, 30, 90)), [detection((300, 100, 30, 90))])
    assert len(seen) == 1 and finder.calls == 0  # the detector found them: no second look
    # Frame 1: the detector misses them, now lying (90 x 30): upright crops see nothing, the turned one does.
    people = look.refine(frame_with("a", 1, (270, 140, 90, 30)), [])
    assert len(people) == 1 and look.counts.crop_found == 1 and look.counts.upright_found == 0
    assert finder.calls == 6  # 0°, 180°, both wider, 90°; then upright at its box (it does lie: kept)
    x, y, w, h = people[0].bbox
    assert 260 <= x <= 275 and 135 <= y <= 145 and 85 <= w <= 110 and 18 <= h <= 40  # in frame px, lying


def test_nobody_found_searches_tiles_every_few_frames_then_follows_with_crops():
    finder = RectangleFinder()
    look = SecondLook(finder, search_every=5)
    small = (500, 250, 12, 36)  # too small for the full frame's detector: it finds nobody
    assert look.refine(frame_with("b", 0), []) == [] and look.counts.searches == 1
    assert look.refine(frame_with("b", 1, small), []) == [] and look.counts.searches == 1  # not due yet
    calls = finder.calls
    for index in range(2, 5):
        look.refine(frame_with("b", index, small), [])
    assert finder.calls == calls and look.counts.searches == 1
    found = look.refine(frame_with("b", 5, small), [])
    assert look.counts.searches == 2 and len(found) == 1 and abs(found[0].bbox[0] - 500) < 5
    calls = finder.calls
    follows = look.refine(frame_with("b", 6, (504, 250, 12, 36)), [])
    assert len(follows) == 1 and finder.calls == calls + 1 and look.counts.crop_found == 1  # one upright crop
    assert look.refine(frame_with("c", 0), []) == [] and look.counts.searches == 3  # a new job starts afresh


def test_implausible_detections_are_dropped():
    look = SecondLook(RectangleFinder(), search_every=1000)
    tube = standing(300, 100, 30, 90)
    tube.image[:, 2] = 0.1  # core joints the model does not believe in
    kept = look.refine(frame_with("d", 0), [detection((100, 100, 30, 90)), pose_detection(tube, 640, 360)])
    assert len(kept) == 1 and kept[0].bbox[0] < 200 and look.counts.implausible == 1


def test_a_tile_find_that_a_closer_view_does_not_see_again_is_dropped():
    class TilesOnly(RectangleFinder):  # sees its person in the wide tiles only, never in a square crop
        def __call__(self, image):
            return super().__call__(image) if image.shape[0] != image.shape[1] else []

    look = SecondLook(TilesOnly())
    assert look.refine(frame_with("e", 0, (500, 250, 12, 36)), []) == []
    assert look.counts.searches == 1 and look.counts.search_found == 0


def test_two_poses_on_one_person_become_one():
    look = SecondLook(RectangleFinder(), search_every=1000)
    one, same, other = detection((100, 100, 30, 90)), detection((104, 108, 26, 80)), detection((300, 100, 30, 90))
    one.score, same.score = 0.6, 0.9
    kept = look.refine(frame_with("f", 0), [one, same, other])
    assert [d.score for d in kept] == [0.9, other.score]


def test_hmr2_blazepose_boxes_get_second_looks_on_real_frames():
    import cv2
    import pytest

    from tests.conftest import VIDEO

    if not VIDEO.exists():
        pytest.skip(f"{VIDEO} not found (the shared media folder)")
    from detectors.hmr2.detector import BlazePoseBoxes

    video = cv2.VideoCapture(str(VIDEO))
    frames = [FrameImage("runner", index, index * 33.3, video.read()[1]) for index in range(3)]
    source = BlazePoseBoxes(second_look=True)
    try:
        boxes = source(frames)
    finally:
        source.close()
    assert [len(b.scores) for b in boxes] == [1, 1, 1]  # the runner, once per frame
    assert list(source.detector.look.follows) == ["runner"]  # the frames' own job: the look follows it across calls


def _small_rider_frames(name: str, folder, indices):
    """Frames ``indices`` of the small-rider clip ``name`` (bench.small_riders, made in ``folder`` from
    ../shared/media/snow) and its rider's labels."""
    import cv2
    import pytest

    from bench.recall import LABELS, read_labels
    from bench.small_riders import SMALL_CLIPS, make_clip

    if not LABELS.exists():
        pytest.skip(f"{LABELS} not found (the shared media folder)")
    spec = next(spec for spec in SMALL_CLIPS if spec.name == name)
    labels = make_clip(spec, folder / f"{name}.avi", read_labels())
    video = cv2.VideoCapture(str(folder / f"{name}.avi"))
    images = [video.read()[1] for _ in range(max(indices) + 1)]
    video.release()
    return {index: FrameImage(name, index, index * 33.3, images[index]) for index in indices}, labels


def test_a_small_rider_taken_for_a_body_lying_across_the_snow_is_seen_again_upright(tmp_path):
    from bench.recall import matches_rider
    from detectors.blazepose import BlazePoseDetector
    from detectors.second_look import lying, with_second_look

    frames, labels = _small_rider_frames("park-jump.third", tmp_path, range(7))
    detector = with_second_look(BlazePoseDetector())
    people = {}
    try:
        for index, frame in frames.items():
            full = detector.inner.detect([frame])[0]
            if index == 0:  # the full frame's pose has the rider's head but hips far off to one side
                assert len(full) == 1 and lying(full[0]) and not matches_rider(full[0].bbox, labels[0])
            people[index] = detector.look.refine(frame, full)
    finally:
        detector.close()
    assert detector.look.counts.upright_found >= 1
    for index in (0, 6):  # the rider (29 x 45 px, riding towards the camera), once, not lying
        assert len(people[index]) == 1 and not lying(people[index][0])
        assert matches_rider(people[index][0].bbox, labels[index])


def test_a_small_rider_who_fell_away_from_the_last_sighting_is_found_in_a_wider_view(tmp_path):
    from bench.recall import matches_rider
    from detectors.blazepose import PoseFinder

    frames, labels = _small_rider_frames("airbag-jump.third", tmp_path, [120])
    finder = PoseFinder(num_poses=2, min_confidence=0.2)
    look = SecondLook(finder)
    seen = labels[102]  # 28 x 28 px, mid-flip; by frame 120 they have dropped 40 px towards the airbag
    look.follows["airbag-jump.third"] = follow = Follow()
    follow.saw(117, np.array([seen.x0, seen.y0, seen.x1 - seen.x0, seen.y1 - seen.y0], np.float32))
    try:
        people = look.refine(frames[120], [])
    finally:
        finder.close()
    assert len(people) == 1 and matches_rider(people[0].bbox, labels[120])
    assert look.counts.crop_found == 1 and look.counts.searches == 0  # the look around found them, no search


def test_a_job_may_ask_for_second_looks_as_its_workers_run_them():
    """A worker builds its detector with or without second looks once: a job names the pipeline's choice or is
    refused, with the flag to start one that serves it."""
    import argparse

    from bus.messages import JOB_OPTIONS
    from bus.schema import check
    from launcher.pipeline import Pipeline

    check({"second_look": False}, JOB_OPTIONS, "job options")
    pipeline = Pipeline.__new__(Pipeline)  # what refusal reads: the launcher's settings and detector kinds
    pipeline.kinds = ("blazepose",)
    pipeline.args = argparse.Namespace(detector="blazepose", fov=None, precision="auto", second_look=True)
    assert pipeline.refusal({"second_look": True}) is None
    assert pipeline.refusal({"second_look": False}) == (
        "job asks for second_look False, but this pipeline's workers run True (start one with --no-second-look "
        "to serve it)")
    pipeline.args.second_look = False
    assert pipeline.refusal({"second_look": False}) is None
    assert pipeline.refusal({"second_look": True}).endswith("(start one without --no-second-look to serve it)")


def test_a_pose_lies_when_its_torso_runs_across_and_shares_a_body_when_its_joints_lie_on_it():
    from detectors.second_look import lying, on

    upright = detection((300, 100, 30, 90))
    turned = standing(300, 100, 30, 90)
    turned.image[:, :2] = turned.image[:, [1, 0]]  # mirrored about the diagonal: the torso runs across
    across = pose_detection(turned, 640, 360)
    assert not lying(upright) and lying(across)
    assert on(upright, np.array([295, 95, 40, 100])) and not on(upright, np.array([400, 95, 40, 100]))
    assert on(upright, np.array([295, 95, 40, 50]))  # the head, shoulders and arms: a third of it and more
