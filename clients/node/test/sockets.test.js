// subscribe(), frames(), follow(), replay() and Control against stand-in sockets written here (no pipeline needed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { decode as unpack, encode, ExtData } from "@msgpack/msgpack";
import * as zmq from "zeromq";

import { Control, TimeoutError, follow, frames, replay, subscribe } from "../index.js";

const keypoints = new ExtData(1, encode(["<f4", [25, 3], new Uint8Array(25 * 3 * 4)]));
const jobStart = (job) => ({ type: "job_start", schema: 1, job, source: "clip.mp4", fps: 30, width: 64, height: 48, frame_count: null });
const frame = (job, index) => ({ type: "frame", schema: 1, job, index, pts_ms: index * 33.3, people: [{ keypoints_3d: keypoints }] });
const jobEnd = (job, frames, error = null) => ({ type: "job_end", schema: 1, job, frames, status: error ? "error" : "ok", error });

/** An XPUB like the track stage's; `ready(n)` resolves once n subscriptions have arrived. */
async function publisher() {
  const socket = new zmq.XPublisher({ linger: 0 });
  await socket.bind("tcp://127.0.0.1:*");
  return {
    endpoint: socket.lastEndpoint,
    async ready(subscriptions) {
      for (let i = 0; i < subscriptions; i++) await socket.receive();
    },
    async publish(...messages) {
      for (const message of messages) await socket.send([`${message.job}/${message.type}`, encode(message)]);
    },
    close: () => socket.close(),
  };
}

async function collect(iterable) {
  const messages = [];
  for await (const message of iterable) messages.push(message);
  return messages;
}

test("subscribe(job) yields that job's messages until its job_end, not those of a job whose id it prefixes", async () => {
  const pub = await publisher();
  try {
    const subscription = subscribe(pub.endpoint, { job: "j1" });
    await subscription.connected;
    const stream = collect(subscription);
    await pub.ready(1);
    await pub.publish(jobStart("j10"), jobStart("j1"), frame("j10", 0), frame("j1", 0), frame("j1", 1), jobEnd("j10", 1), jobEnd("j1", 2));
    const messages = await stream;
    assert.deepEqual(messages.map((m) => `${m.type}/${m.job}/${m.index ?? ""}`), ["job_start/j1/", "frame/j1/0", "frame/j1/1", "job_end/j1/"]);
    assert.ok(messages[1].people[0].keypoints_3d.data instanceof Float32Array);
  } finally {
    pub.close();
  }
});

test("subscribe() with no job yields every job's messages", async () => {
  const pub = await publisher();
  try {
    const seen = [];
    const stream = (async () => {
      for await (const message of subscribe(pub.endpoint)) {
        seen.push(message.job);
        if (seen.length === 2) return;
      }
    })();
    await pub.ready(1);
    await pub.publish(jobStart("a"), jobStart("b"));
    await stream;
    assert.deepEqual(seen, ["a", "b"]);
  } finally {
    pub.close();
  }
});

for (const [name, indices, end, error] of [
  ["a skipped index", [0, 2], jobEnd("j", 2), /frame 2 arrived where frame 1 was due/],
  ["a repeated index", [0, 1, 1], jobEnd("j", 3), /frame 1 arrived where frame 2 was due/],
  ["a job_end with another count", [0, 1], jobEnd("j", 3), /job_end reports 3 frames, 2 arrived/],
  ["a job that failed", [0], jobEnd("j", 1, "decode broke"), /job j failed: decode broke/],
]) {
  test(`frames() throws on ${name}`, async () => {
    const pub = await publisher();
    try {
      const stream = collect(frames(pub.endpoint, "j"));
      await pub.ready(1);
      await pub.publish(jobStart("j"), ...indices.map((i) => frame("j", i)), end);
      await assert.rejects(stream, error);
    } finally {
      pub.close();
    }
  });
}

test("frames() yields contiguous frames in order", async () => {
  const pub = await publisher();
  try {
    const stream = collect(frames(pub.endpoint, "j"));
    await pub.ready(1);
    await pub.publish(jobStart("j"), frame("j", 0), frame("j", 1), frame("j", 2), jobEnd("j", 3));
    assert.deepEqual((await stream).map((m) => m.index), [0, 1, 2]);
  } finally {
    pub.close();
  }
});

test("subscribe() throws TimeoutError when nothing arrives within timeoutMs", async () => {
  const pub = await publisher();
  try {
    await assert.rejects(collect(subscribe(pub.endpoint, { job: "j", timeoutMs: 200 })), TimeoutError);
  } finally {
    pub.close();
  }
});

test("subscribe() stops with the signal's reason when aborted", async () => {
  const pub = await publisher();
  try {
    const controller = new AbortController();
    const stream = collect(subscribe(pub.endpoint, { job: "j", signal: controller.signal }));
    await pub.ready(1);
    controller.abort();
    await assert.rejects(stream, { name: "AbortError" });
  } finally {
    pub.close();
  }
});

/**
 * The track stage's side of a job, stood in for: `publish` logs a message then
 * sends it live, `logOnly` logs it as if the live stream lost it; a ROUTER
 * answers replay requests from the log as bus/joblog.py does.
 */
async function trackStage() {
  const pub = await publisher();
  const log = [];
  const history = new zmq.Router({ linger: 0 });
  await history.bind("tcp://127.0.0.1:*");
  const send = (identity, message) => history.send([identity, `${message.job}/${message.type}`, encode(message)]);
  (async () => {
    for await (const [identity, request] of history) {
      const { job, from, count } = unpack(request);
      if (from < 0) {
        await send(identity, { type: "replay_end", schema: 1, job: "invalid", next: 0, done: true, error: "bad replay request" });
        continue;
      }
      const selected = [];
      let next = from, done = false;
      for (const message of log.filter((m) => m.job === job)) {
        if (message.type === "job_end") {
          selected.push(message);
          done = true;
          break;
        }
        if (next - from >= count) break;
        if (message.type === "job_start") selected.push(message);
        if (message.type === "frame" && message.index >= from) {
          selected.push(message);
          next = message.index + 1;
        }
      }
      for (const message of selected) await send(identity, message);
      await send(identity, { type: "replay_end", schema: 1, job, next, done, error: null });
    }
  })().catch(() => {}); // ends when the socket closes
  return {
    results: pub.endpoint,
    history: history.lastEndpoint,
    ready: pub.ready,
    logOnly: (...messages) => log.push(...messages),
    async publish(...messages) {
      log.push(...messages); // first, as the track stage: whoever sees it live can already replay it
      await pub.publish(...messages);
    },
    close() {
      pub.close();
      history.close();
    },
  };
}

const summary = (messages) => messages.map((m) => m.index ?? m.type);

test("follow() joining mid-job gets the logged frames, then the live ones, each once", async () => {
  const stage = await trackStage();
  try {
    await stage.publish(jobStart("j"), frame("j", 0), frame("j", 1), frame("j", 2)); // before anyone listened
    const stream = collect(follow(stage.results, stage.history, "j"));
    await stage.ready(1);
    await stage.publish(frame("j", 3), frame("j", 4), jobEnd("j", 5));
    assert.deepEqual(summary(await stream), ["job_start", 0, 1, 2, 3, 4, "job_end"]);
  } finally {
    stage.close();
  }
});

test("follow() fetches the frames the live stream skipped from the log", async () => {
  const stage = await trackStage();
  try {
    const messages = follow(stage.results, stage.history, "j")[Symbol.asyncIterator]();
    await stage.ready(1);
    await stage.publish(jobStart("j"), frame("j", 0));
    const seen = [(await messages.next()).value, (await messages.next()).value];
    stage.logOnly(frame("j", 1), frame("j", 2));
    await stage.publish(frame("j", 3), jobEnd("j", 4));
    for await (const message of { [Symbol.asyncIterator]: () => messages }) seen.push(message);
    assert.deepEqual(summary(seen), ["job_start", 0, 1, 2, 3, "job_end"]);
  } finally {
    stage.close();
  }
});

test("follow({start}) resumes at that frame, job_start first; frames({history, start}) checks from there", async () => {
  const stage = await trackStage();
  try {
    await stage.publish(jobStart("j"), frame("j", 0), frame("j", 1), frame("j", 2), jobEnd("j", 3));
    assert.deepEqual(summary(await collect(follow(stage.results, stage.history, "j", { start: 2 }))), ["job_start", 2, "job_end"]);
    assert.deepEqual(summary(await collect(frames(stage.results, "j", { history: stage.history, start: 1 }))), [1, 2]);
  } finally {
    stage.close();
  }
});

test("replay() gives the logged messages and the replay_end, and rejects a refused request", async () => {
  const stage = await trackStage();
  try {
    await stage.publish(jobStart("j"), frame("j", 0), frame("j", 1), frame("j", 2));
    const { messages, end } = await replay(stage.history, "j", 1, 1);
    assert.deepEqual(summary(messages), ["job_start", 1]);
    assert.deepEqual([end.next, end.done], [2, false]);
    await assert.rejects(replay(stage.history, "j", -1), /replay refused: bad replay request/);
  } finally {
    stage.close();
  }
});

test("follow() stops with the signal's reason when aborted", async () => {
  const stage = await trackStage();
  try {
    const controller = new AbortController();
    const stream = collect(follow(stage.results, stage.history, "j", { signal: controller.signal }));
    await stage.ready(1);
    controller.abort();
    await assert.rejects(stream, { name: "AbortError" });
  } finally {
    stage.close();
  }
});

test("follow() throws TimeoutError when nothing new arrives within timeoutMs", async () => {
  const stage = await trackStage();
  try {
    await assert.rejects(collect(follow(stage.results, stage.history, "j", { timeoutMs: 300 })), TimeoutError);
  } finally {
    stage.close();
  }
});

/** A control socket that ignores the first `ignore` requests and answers the rest with `answer(request)`. */
async function controlServer(answer, ignore = 0) {
  const socket = new zmq.Router({ linger: 0 });
  await socket.bind("tcp://127.0.0.1:*");
  const requests = [];
  (async () => {
    for await (const [peer, empty, payload] of socket) {
      requests.push(unpack(payload));
      if (requests.length > ignore) await socket.send([peer, empty, encode(answer(requests.at(-1)))]);
    }
  })();
  return { endpoint: socket.lastEndpoint, requests, close: () => socket.close() };
}

test("Control times out, then works again on a fresh socket (Lazy Pirate)", async () => {
  const server = await controlServer(() => ({ ok: true, stages: { track: true } }), 1);
  const control = new Control(server.endpoint, { timeoutMs: 300 });
  try {
    await assert.rejects(control.health(), TimeoutError);
    assert.deepEqual(await control.health(), { ok: true, stages: { track: true } });
    assert.deepEqual(server.requests, [{ cmd: "health" }, { cmd: "health" }]);
  } finally {
    control.close();
    server.close();
  }
});

test("Control sends the requests of bus/client.py and runs concurrent calls one at a time", async () => {
  const server = await controlServer((request) =>
    request.cmd === "submit" ? (request.source === "bad.mp4" ? { ok: false, error: "no such file" } : { ok: true, job: request.job ?? "auto" })
      : request.cmd === "list" ? { ok: true, jobs: [] } : { ok: true, id: request.job, state: "done" });
  const control = new Control(server.endpoint, { timeoutMs: 2000 });
  try {
    const replies = await Promise.all([
      control.submit("clip.mp4", { job: "mine", detector: "blazepose" }),
      control.submit("clip.mp4"),
      control.status("mine"),
      control.list(),
    ]);
    assert.deepEqual(replies, ["mine", "auto", { ok: true, id: "mine", state: "done" }, { ok: true, jobs: [] }]);
    assert.deepEqual(server.requests, [
      { cmd: "submit", source: "clip.mp4", options: { detector: "blazepose" }, job: "mine" },
      { cmd: "submit", source: "clip.mp4", options: {} },
      { cmd: "status", job: "mine" },
      { cmd: "list" },
    ]);
    await assert.rejects(control.submit("bad.mp4"), /no such file/);
  } finally {
    control.close();
    server.close();
  }
});
