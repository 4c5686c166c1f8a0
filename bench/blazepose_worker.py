"""One BlazePose run over videos, in a process of its own: the legacy API or the Tasks API.

    python bench/blazepose_worker.py legacy - NUM_POSES OUT.npz VIDEO...        (mediapipe 0.10.14, complexity 1)
    python bench/blazepose_worker.py tasks BUNDLE.task NUM_POSES OUT.npz VIDEO...  (mediapipe >= 1.2)

It imports only numpy, OpenCV and mediapipe, so the legacy run can use a venv of
its own (``bench.blazepose`` makes one): the two mediapipes cannot share one.
Both run in video (tracking) mode and time the same work per frame: BGR → RGB
and the landmarker call. Per video ``i`` it saves:

- ``v{i}_image`` (F, P, 33, 4): x px, y px, visibility, presence; NaN where fewer
  than P poses (legacy: P = 1), poses largest box first;
- ``v{i}_world`` (F, P, 33, 3): metres, hip-centred;
- ``v{i}_wall_ms``, ``v{i}_cpu_ms`` (F,): per frame, CPU of all the process's threads.
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np


def legacy_runner(_bundle: str, _num_poses: int):
    import mediapipe as mp

    pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)

    def run(rgb: np.ndarray, _timestamp_ms: int) -> list[tuple[list, list]]:
        result = pose.process(rgb)
        if result.pose_landmarks is None:
            return []
        return [(result.pose_landmarks.landmark, result.pose_world_landmarks.landmark)]
    return run, pose.close


def tasks_runner(bundle: str, num_poses: int):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    landmarker = vision.PoseLandmarker.create_from_options(vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=bundle), running_mode=vision.RunningMode.VIDEO,
        num_poses=num_poses))

    def run(rgb: np.ndarray, timestamp_ms: int) -> list[tuple[list, list]]:
        result = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), timestamp_ms)
        return list(zip(result.pose_landmarks, result.pose_world_landmarks))
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
        height, width = frame.shape[:2]
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        found = run(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), int(index * 1000 / fps))
        wall.append((time.perf_counter() - wall_start) * 1000)
        cpu.append((time.process_time() - cpu_start) * 1000)
        image = np.full((poses, 33, 4), np.nan, np.float32)
        world = np.full((poses, 33, 3), np.nan, np.float32)
        found = [(np.array([(p.x * width, p.y * height, p.visibility or 0.0, p.presence or 0.0) for p in lm]),
                  np.array([(p.x, p.y, p.z) for p in wl])) for lm, wl in found]
        found.sort(key=lambda pair: -np.prod(np.ptp(pair[0][:, :2], axis=0)))
        for k, (lm, wl) in enumerate(found[:poses]):
            image[k], world[k] = lm, wl
        images.append(image)
        worlds.append(world)
        index += 1
    close()
    return {"image": np.stack(images), "world": np.stack(worlds), "wall_ms": np.array(wall), "cpu_ms": np.array(cpu)}


def main(argv: list[str]) -> None:
    engine, bundle, num_poses, out, *videos = argv
    make = {"legacy": legacy_runner, "tasks": tasks_runner}[engine]
    poses = 1 if engine == "legacy" else int(num_poses)
    arrays = {}
    for i, video in enumerate(videos):
        for key, value in one_video(lambda: make(bundle, poses), video, poses).items():
            arrays[f"v{i}_{key}"] = value
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
