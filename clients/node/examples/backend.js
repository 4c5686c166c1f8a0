#!/usr/bin/env node
// What the app's upload route does, against `launch.py serve --overlay DIR`: upload a clip, follow its job,
// store every frame (one document per frame, as the app's Mongo `frames` collection), and fetch the overlay
// video over the control socket when job_end lists it: nothing here needs posebus's files, so posebus may run
// on another machine. Prints a JSON summary (used by tests/test_node_client.py).
//   node examples/backend.js CONTROL RESULTS HISTORY CLIP STORE_DIR
// STORE_DIR gets frames/<frameNumber>.json, video.json (the app's `videos` document) and overlay.mp4.
import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Control, appDocument, appFrame, follow, resultFiles } from "../index.js";

const [controlEndpoint, results, history, clip, store] = process.argv.slice(2);

/**
 * The one place a clip goes to posebus: its bytes, in chunks over the control socket, so posebus needs no
 * access to this machine's files (a backend beside posebus could `control.submit(path, { job })` instead).
 */
async function sendClip(control, path, job) {
  const upload = await control.upload(path);
  return control.submitUpload(upload, { job });
}

const control = new Control(controlEndpoint, { timeoutMs: 10_000 });
const videoId = `video-${randomUUID().slice(0, 8)}`;
await mkdir(join(store, "frames"), { recursive: true });
const storeFrame = (frame) => writeFile(join(store, "frames", `${frame.frameNumber}.json`), JSON.stringify({ videoId, ...frame }));

const job = await sendClip(control, clip, videoId);
// follow() catches up from the job's log, so subscribing after the submit loses nothing.
const messages = [];
let jobStart = null, storedLive = 0;
for await (const message of follow(results, history, job, { timeoutMs: 120_000 })) {
  if (message.type === "track_event") continue;
  messages.push(message);
  if (message.type === "job_start") jobStart = message;
  if (message.type === "frame") {
    await storeFrame(appFrame(message, jobStart)); // stored as it comes: the app can show progress
    storedLive += 1;
  }
}
const jobEnd = messages.at(-1);
// The whole job is known now: frames the live stream had nobody on (before the rider was first seen)
// hold the rider, as in the --app-json file. Store those again.
const document = appDocument(messages, { videoId });
const backfilled = document.frames.filter((frame) => frame.persons[0]?.backfilled);
for (const frame of backfilled) await storeFrame(frame);

const files = resultFiles(jobEnd); // complete on disk now: job_end waits for them
let overlayVideoPath = null, overlayBytes = 0;
if (files.overlay !== undefined) {
  // files.overlay is a path on posebus's host: the bytes come over the control socket, in chunks.
  overlayVideoPath = join(store, "overlay.mp4");
  overlayBytes = await control.fetchOutput(job, "overlay", overlayVideoPath);
}
const video = {
  videoId, fps: document.fps, duration: document.duration, resolution: document.resolution,
  frameCount: document.frameCount, originalVideoPath: clip, overlayVideoPath, personSeen: document.metadata.personSeen,
};
await writeFile(join(store, "video.json"), JSON.stringify(video));
console.log(JSON.stringify({ job, storedLive, backfilled: backfilled.length, video, outputs: files, overlayBytes }));
control.close();
