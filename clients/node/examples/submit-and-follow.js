#!/usr/bin/env node
// Submit a video to `launch.py serve` and follow its frames; prints a JSON summary (used by tests/test_node_client.py).
//   node examples/submit-and-follow.js CONTROL_ENDPOINT RESULTS_ENDPOINT VIDEO
import { randomUUID } from "node:crypto";
import { Control, frames } from "../index.js";

const [controlEndpoint, resultsEndpoint, video] = process.argv.slice(2);
const control = new Control(controlEndpoint, { timeoutMs: 10_000 });
// Choose the job id here so the subscription exists before the job does: nothing is replayed to late joiners.
const job = `node-${randomUUID().slice(0, 8)}`;
const stream = frames(resultsEndpoint, job, { timeoutMs: 60_000 });
await stream.connected;
const submitted = await control.submit(video, { job });
const indices = [];
for await (const frame of stream) indices.push(frame.index);
console.log(JSON.stringify({ job, submitted, indices, status: await control.status(job), health: await control.health(), list: await control.list() }));
control.close();
