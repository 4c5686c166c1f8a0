// appDocument (the app's document, the leading frames held) and resultFiles (job_end's outputs), on made-up messages.
import assert from "node:assert/strict";
import { test } from "node:test";

import { OutputError, appDocument, resultFiles } from "../index.js";

const array = (shape, value) => ({ dtype: "<f4", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value) });
const names = ["nose", "pelvis"];
const jobStart = { type: "job_start", schema: 1, job: "j", source: "clip.mp4", fps: 29.97, width: 640, height: 360,
  frame_count: 4, detector: "blazepose", joints: { keypoints_2d: names, keypoints_3d: names }, angles: ["leftKnee"],
  intrinsics: { fx: 1000, fy: 1000, cx: 320, cy: 180 } };
const person = (state, confidence) => ({ track_id: 1, state, confidence, frames_since_seen: 0, bbox: array([4], 10),
  keypoints_2d: array([2, 3], 0.5), keypoints_3d: array([2, 3], 2), joint_angles: { leftKnee: 170 },
  raw: { bbox: array([4], 11) } });
const frame = (index, people) => ({ type: "frame", schema: 1, job: "j", index, pts_ms: index * 33.4, people });
const jobEnd = (frames, extra = {}) => ({ type: "job_end", schema: 1, job: "j", frames, status: "ok", error: null, ...extra });

test("appDocument holds the first person on the frames before it, flagged, and says when nobody is seen", () => {
  const document = appDocument([jobStart, frame(0, []), frame(1, []), frame(2, [person("observed", 0.8)]),
    frame(3, [person("predicted", 0.72)]), jobEnd(4)]);
  const first = document.frames.map((f) => f.persons[0]);
  assert.deepEqual(first.map((p) => [p.trackingState, p.backfilled, p.framesSinceSeen]),
    [["held", true, 2], ["held", true, 1], ["observed", false, 0], ["predicted", false, 0]]);
  assert.deepEqual(first.map((p) => p.confidence).slice(0, 3), [0.8 * 0.9 * 0.9, 0.8 * 0.9, 0.8]);
  assert.deepEqual(first[0].keypoints3d, first[2].keypoints3d);
  assert.equal(document.metadata.firstPersonFrame, 2);
  assert.equal(document.metadata.backfilledFrames, 2);

  const nobody = appDocument([jobStart, frame(0, []), jobEnd(1)]);
  assert.deepEqual([nobody.metadata.personSeen, nobody.metadata.firstPersonFrame, nobody.frames[0].persons], [false, null, []]);
});

test("appDocument refuses a gap and a failed job", () => {
  assert.throws(() => appDocument([jobStart, frame(0, []), frame(2, []), jobEnd(3)]), /not 0..2/);
  assert.throws(() => appDocument([jobStart, frame(0, []), { ...jobEnd(1), status: "error", error: "boom" }]), /did not end cleanly: boom/);
});

test("resultFiles gives the outputs, or throws naming the failed ones", () => {
  const outputs = { app_json: "/r/j.json", gltf: ["/r/j.track1.glb"] };
  assert.deepEqual(resultFiles(jobEnd(1, { outputs, output_errors: {} })), outputs);
  assert.deepEqual(resultFiles(jobEnd(1)), {});
  assert.throws(() => resultFiles(jobEnd(1, { outputs, output_errors: { overlay: "OSError: disk full" } })),
    (error) => error instanceof OutputError && /overlay: OSError: disk full/.test(error.message) && error.outputs === outputs);
});
