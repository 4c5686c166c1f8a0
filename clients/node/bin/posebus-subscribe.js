#!/usr/bin/env node
// Print one line per result message, for people watching a pipeline.
//   posebus-subscribe ENDPOINT [--job J] [--count N]
import { parseArgs } from "node:util";
import { subscribe } from "../index.js";

const usage = "usage: posebus-subscribe ENDPOINT [--job J] [--count N]";
let parsed;
try {
  parsed = parseArgs({ allowPositionals: true, options: { job: { type: "string" }, count: { type: "string" } } });
} catch (error) {
  console.error(`${error.message}\n${usage}`);
  process.exit(2);
}
const { positionals: [endpoint], values: { job, count } } = parsed;
if (!endpoint || (count !== undefined && !(Number(count) > 0))) {
  console.error(usage);
  process.exit(2);
}

function describe(message) {
  const head = `${message.type}/${message.job}`;
  if (message.type === "job_start") {
    return `${head} source=${message.source} ${message.width}x${message.height} fps=${message.fps} frames=${message.frame_count ?? "?"}`;
  }
  if (message.type === "job_end") return `${head} frames=${message.frames} status=${message.status}${message.error ? ` error=${message.error}` : ""}`;
  const people = message.people.map((p) => `#${p.track_id} ${p.state} ${p.confidence.toFixed(2)}`);
  return `${head} index=${message.index} pts=${message.pts_ms.toFixed(1)}ms people=${message.people.length}${people.length ? ` [${people.join(", ")}]` : ""}`;
}

const controller = new AbortController();
process.once("SIGINT", () => controller.abort());
let printed = 0;
try {
  for await (const message of subscribe(endpoint, { job, signal: controller.signal })) {
    console.log(describe(message));
    if (++printed === Number(count)) break;
  }
} catch (error) {
  if (error.name !== "AbortError") throw error;
}
