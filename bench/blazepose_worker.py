"""One BlazePose run over videos, in a process of its own: the legacy API or posebus's detector (Tasks API).

    python bench/blazepose_worker.py legacy - - - OUT.npz VIDEO...        (mediapipe 0.10.14, complexity 1)
    python bench/blazepose_worker.py tasks MODEL NUM_POSES CENSUS_EVERY OUT.npz VIDEO...  (mediapipe >= 1.2)
    python bench/blazepose_worker.py raw MODEL NUM_POSES - OUT.npz VIDEO...  (the bare VIDEO-mode landmarker)

The legacy run imports only numpy, OpenCV and mediapipe, so it can use a venv of
its own (``bench.blazepose`` makes one): the two mediapipes cannot share one.
Both run in video (tracking) mode and time the same work per frame: from the BGR
frame to the landmarks (colour conversion, the landmarker; for posebus's detector
also its census frames). Per video ``i`` it saves:

- ``v{i}_image`` (F, P, 33, 4): x px, y px, visibility, presence; NaN where fewer
  than P poses (legacy: P = 1), poses largest box first;
- ``v{i}_world`` (F, P, 33, 3): metres, hip-centred;
- ``v{i}_wall_ms``, ``v{i}_cpu_ms`` (F,): per frame, CPU of all the process's threads.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np


def legacy_runner():
    import mediapipe as mp

    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)

    def run(bgr: np.ndarray, _index: int, _timestamp_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        height, width = bgr.shape[:2]
        result = pose.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if result.pose_landmarks is None:
            return []
        return [(np.array([(p.x * width, p.y * height, p.visibility, p.presence)
                           for p in result.pose_landmarks.landmark]),
                 np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark]))]
    return run, pose.close


def tasks_runner(model: str, num_poses: int, census_every: int):
    """posebus's own detector (``detectors.blazepose``), which imports mediapipe >= 1.2."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from detectors.base import FrameImage
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(model=model, num_poses=num_poses, census_every=census_every)

    def run(bgr: np.ndarray, index: int, timestamp_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(pose.image, pose.world) for pose in detector.poses(FrameImage("bench", index, timestamp_ms, bgr))]
    return run, detector.close


def raw_runner(model: str, num_poses: int):
    """MediaPipe's VIDEO-mode landmarker alone, as ``detectors.blazepose`` makes it (no census)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from detectors.blazepose import _mp_image, create_landmarker, poses_of

    landmarker = create_landmarker(model, video=True, num_poses=num_poses)

    def run(bgr: np.ndarray, _index: int, timestamp_ms: int) -> list[tuple[np.ndarray, np.ndarray]]:
        result = landmarker.detect_for_video(_mp_image(bgr), timestamp_ms)
        return [(pose.image, pose.world) for pose in poses_of(result, bgr.shape[1], bgr.shape[0])]
    return run, landmarker.close


def one_video(runner, path: str, poses: int) -> dict[str, np.ndarray]:
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    images, worlds, wall, cpu = [], [], [], []
    run, close = runner()
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        found = run(frame, index, int(index * 1000 / fps))
        wall.append((time.perf_counter() - wall_start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
        image = np.full((poses, 33, 4), np.nan, np.float32)
        world = np.full((poses, 33, 3), np.nan, np.float32)
        found.sort(key=lambda pair: -np.prod(np.ptp(pair[0][:, :2], axis=0)))
        for k, (lm, wl) in enumerate(found[:poses]):
            image[k], world[k] = lm, wl
        images.append(image)
        worlds.append(world)
        index += 1
    close()
    return {"image": np.stack(images), "world": np.stack(worlds), "wall_ms": np.array(wall), "cpu_ms": np.array(cpu)}


def main(argv: list[str]) -> None:
    engine, model, num_poses, census_every, out, *videos = argv
    if engine == "legacy":
        runner, poses = legacy_runner, 1
    else:
        poses = int(num_poses)

        def runner():
            if engine == "raw":
                return raw_runner(model, poses)
            return tasks_runner(model, poses, int(census_every))
    arrays = {}
    for i, video in enumerate(videos):
        for key, value in one_video(runner, video, poses).items():
            arrays[f"v{i}_{key}"] = value
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
