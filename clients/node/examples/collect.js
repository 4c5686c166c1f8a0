#!/usr/bin/env node
// Subscribe to one job and print a JSON summary of what arrived (used by tests/test_node_client.py).
//   node examples/collect.js RESULTS_ENDPOINT JOB
import { subscribe } from "../index.js";

const [endpoint, job] = process.argv.slice(2);
const summary = { types: [], indices: [], keypointArrays: [], jobStart: null, jobEnd: null, firstKeypoints: null };
for await (const message of subscribe(endpoint, { job, timeoutMs: 60_000 })) {
  summary.types.push(message.type);
  if (message.type === "job_start") summary.jobStart = message;
  if (message.type === "job_end") summary.jobEnd = message;
  if (message.type !== "frame") continue;
  summary.indices.push(message.index);
  const keypoints = message.people[0]?.keypoints_3d;
  // What a backend gets: the typed array's class, shape and alignment for every frame.
  summary.keypointArrays.push(keypoints && `${keypoints.data.constructor.name} ${keypoints.shape.join("x")}`
    + (keypoints.data.byteOffset % keypoints.data.BYTES_PER_ELEMENT === 0 ? " aligned" : " misaligned"));
  summary.firstKeypoints ??= keypoints && { shape: keypoints.shape, dtype: keypoints.dtype, values: Array.from(keypoints.data) };
}
console.log(JSON.stringify(summary));
