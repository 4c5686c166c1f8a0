#!/usr/bin/env node
// Follow one job from a frame index, joining whenever, and print one JSON line per message as it
// arrives: {type, index} (used by tests/test_node_client.py), or with --app each frame in the app's shape.
//   node examples/follow.js RESULTS_ENDPOINT HISTORY_ENDPOINT JOB [START] [--app]
// Stopped and run again with START = the last index printed + 1, it carries on where it stopped.
import { appFrames, follow } from "../index.js";

const [results, history, job, start = "0", mode] = process.argv.slice(2);
const options = { start: Number(start), timeoutMs: 30_000 };
if (mode === "--app") {
  for await (const frame of appFrames(results, job, { ...options, history })) console.log(JSON.stringify(frame));
} else {
  for await (const message of follow(results, history, job, options)) {
    console.log(JSON.stringify({ type: message.type, index: message.index ?? null }));
  }
}
