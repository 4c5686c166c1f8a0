// Node.js client for posebus: decode result messages, subscribe to the results
// socket, and send requests to the control socket. Mirrors bus/client.py.
import { readFileSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { decode as unpack, encode as pack } from "@msgpack/msgpack";
import * as zmq from "zeromq";

export const PUBLIC_TYPES = Object.freeze(["job_start", "frame", "track_event", "job_end"]);
export const SCHEMA = 1;
const EXT_NDARRAY = 1;

// The dtypes bus/codec.py may send (all little-endian) and the typed array each is read as.
const TYPED_ARRAYS = {
  "|b1": Uint8Array,
  "|u1": Uint8Array,
  "|i1": Int8Array,
  "<u2": Uint16Array,
  "<i2": Int16Array,
  "<u4": Uint32Array,
  "<i4": Int32Array,
  "<u8": BigUint64Array,
  "<i8": BigInt64Array,
  "<f2": Uint16Array, // raw bits: Node 20 has no Float16Array, so halfToFloat widens them to Float32Array
  "<f4": Float32Array,
  "<f8": Float64Array,
};

/** A message that cannot be decoded; the text says why in one line. */
export class CodecError extends Error {
  name = "CodecError";
}

/** Nothing arrived (subscribe) or no reply came (Control) within the timeout. */
export class TimeoutError extends Error {
  name = "TimeoutError";
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Raw little-endian bytes -> a typed array that is correctly aligned (a view when possible, else a copy). */
function typedArray(bytes, ArrayType) {
  const itemSize = ArrayType.BYTES_PER_ELEMENT;
  const length = bytes.byteLength / itemSize;
  if (bytes.byteOffset % itemSize === 0) {
    return new ArrayType(bytes.buffer, bytes.byteOffset, length);
  }
  // msgpack bin fields (and pooled Buffers) start at arbitrary offsets; a typed
  // array view needs an offset that is a multiple of its element size.
  const aligned = new ArrayType(length);
  new Uint8Array(aligned.buffer).set(bytes);
  return aligned;
}

/** IEEE half-precision bit patterns -> Float32Array. */
function halfToFloat(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const sign = bits[i] & 0x8000 ? -1 : 1;
    const exponent = (bits[i] >> 10) & 0x1f;
    const fraction = bits[i] & 0x3ff;
    if (exponent === 0) out[i] = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 31) out[i] = fraction ? NaN : sign * Infinity;
    else out[i] = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
  }
  return out;
}

function decodeNDArray(body, buffers) {
  let header;
  try {
    header = unpack(body);
  } catch (error) {
    throw new CodecError(`bad array header: ${error.message}`);
  }
  if (!Array.isArray(header) || header.length !== 3) throw new CodecError("bad array header: not [dtype, shape, data]");
  const [dtype, shape, data] = header;
  const ArrayType = TYPED_ARRAYS[dtype];
  if (ArrayType === undefined) throw new CodecError(`array dtype ${JSON.stringify(dtype)} not allowed`);
  if (!Array.isArray(shape) || !shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new CodecError(`bad array shape ${JSON.stringify(shape)}`);
  }
  let bytes;
  if (Number.isInteger(data)) {
    if (data < 0 || data >= buffers.length) throw new CodecError(`array refers to missing part ${data + 1}`);
    bytes = buffers[data];
  } else if (data instanceof Uint8Array) {
    bytes = data;
  } else {
    throw new CodecError("array data is neither bytes nor a part index");
  }
  const expected = shape.reduce((a, b) => a * b, 1) * ArrayType.BYTES_PER_ELEMENT;
  if (expected !== bytes.byteLength) {
    throw new CodecError(`array of shape [${shape}] and dtype ${dtype} does not match ${bytes.byteLength} bytes`);
  }
  if (!LITTLE_ENDIAN_HOST && ArrayType.BYTES_PER_ELEMENT > 1) throw new CodecError("big-endian hosts are not supported");
  const values = typedArray(bytes, ArrayType);
  return { dtype, shape, data: dtype === "<f2" ? halfToFloat(values) : values };
}

/**
 * Decode ZeroMQ parts `[payload, ...buffers]` (the topic already removed) into a plain object.
 * Arrays become `{dtype, shape, data}` with `data` a typed array; it may share memory with the parts.
 */
export function decode(parts) {
  if (!parts || parts.length === 0) throw new CodecError("empty message");
  const [payload, ...buffers] = parts.map((part) => (part instanceof Uint8Array ? part : new Uint8Array(part)));
  // Our own extension codec rather than ExtensionCodec: that one returns unknown types as ExtData instead of failing.
  const extensionCodec = {
    tryToEncode: () => null,
    decode: (body, type) => {
      if (type !== EXT_NDARRAY) throw new CodecError(`unknown extension type ${type}`);
      return decodeNDArray(body, buffers);
    },
  };
  let message;
  try {
    message = unpack(payload, { extensionCodec });
  } catch (error) {
    if (error instanceof CodecError) throw error;
    throw new CodecError(`not a msgpack message: ${error.message}`);
  }
  if (message === null || typeof message !== "object" || Array.isArray(message) || message instanceof Uint8Array) {
    throw new CodecError("payload is not a map");
  }
  return message;
}

/** The header checks bus/messages.py makes on every public message; returns the message. */
function checkHeader(message, topic, types = PUBLIC_TYPES) {
  if (!types.includes(message.type)) throw new Error(`unexpected message type ${JSON.stringify(message.type)}`);
  if (message.schema !== SCHEMA) throw new Error(`schema version ${JSON.stringify(message.schema)} is not ${SCHEMA}`);
  if (typeof message.job !== "string") throw new Error(`${message.type}.job is not a string`);
  if (topic !== `${message.job}/${message.type}`) throw new Error(`topic ${topic} does not match the ${message.type} message of job ${message.job}`);
  return message;
}

/**
 * CURVE for a backend on another machine (docs/security.md): `curve` is `{serverKey, publicKey, secretKey}`,
 * Z85 strings (the server's public key, this backend's key pair), or undefined for none. The socket options
 * that make a socket a CURVE client; they must be set before connect (constructors take them).
 */
function curveOptions(curve) {
  if (curve === undefined) return {};
  for (const key of ["serverKey", "publicKey", "secretKey"]) {
    if (typeof curve[key] !== "string" || curve[key].length !== 40) {
      throw new Error(`curve.${key} must be a 40-character Z85 key`);
    }
  }
  return { curveServerKey: curve.serverKey, curvePublicKey: curve.publicKey, curveSecretKey: curve.secretKey };
}

/** The Z85 key named `name` ("public-key" or "secret-key") in a certificate file of a posebus key store. */
function certificateKey(file, name) {
  const found = readFileSync(file, "utf8").match(new RegExp(`^\\s*${name}\\s*=\\s*"([^"]{40})"`, "m"));
  if (found === null) throw new Error(`${file} holds no ${name}`);
  return found[1];
}

/**
 * `{serverKey, publicKey, secretKey}` from a posebus key store (`python -m bus.keys`, bus/security.py):
 * this backend's pair `<ownName>.key_secret` and the server's public `<serverName>.key`.
 */
export function curveFromKeyStore(folder, ownName, serverName = "server") {
  const own = join(folder, `${ownName}.key_secret`);
  return { serverKey: certificateKey(join(folder, `${serverName}.key`), "public-key"),
           publicKey: certificateKey(own, "public-key"), secretKey: certificateKey(own, "secret-key") };
}

/**
 * Result messages from a results endpoint, as an async iterable. The socket
 * connects and subscribes at construction, so create it before submitting a job
 * (and await `connected`): the results socket does not replay what was missed.
 */
export class Subscription {
  /** Resolves once connected to the publisher; the subscriptions go out right after. */
  connected;
  #socket;
  #endpoint;
  #job;
  #timeoutMs;
  #signal;
  #onAbort = () => this.close(); // a pending receive() then rejects and the iterator reports the abort

  constructor(endpoint, { job, topics, signal, timeoutMs, curve } = {}) {
    signal?.throwIfAborted();
    this.#endpoint = endpoint;
    this.#job = job;
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    this.#socket = new zmq.Subscriber({ linger: 0, receiveHighWaterMark: 1000, receiveTimeout: timeoutMs ?? -1,
                                        ...curveOptions(curve) });
    this.connected = new Promise((resolve) => this.#socket.events.on("handshake", () => resolve()));
    this.#socket.connect(endpoint);
    // Topics are `<job>/<type>` and job ids hold no "/": one prefix follows exactly one job.
    this.#socket.subscribe(...(topics ?? [job !== undefined ? `${job}/` : ""]));
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  async *[Symbol.asyncIterator]() {
    try {
      while (true) {
        let topic, parts;
        try {
          [topic, ...parts] = await this.#socket.receive();
        } catch (error) {
          this.#signal?.throwIfAborted();
          if (error.code === "EAGAIN" && !this.#socket.closed) {
            throw new TimeoutError(`no message from ${this.#endpoint} for ${this.#timeoutMs} ms`);
          }
          throw error;
        }
        const message = checkHeader(decode(parts), topic.toString());
        if (this.#job !== undefined && message.job !== this.#job) continue; // a longer job id with this one as prefix
        yield message;
        if (this.#job !== undefined && message.type === "job_end") return;
      }
    } finally {
      this.close();
    }
  }

  close() {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (!this.#socket.closed) this.#socket.close();
  }
}

/** Validated result messages (of one job, until its job_end, when `job` is given). */
export function subscribe(endpoint, options = {}) {
  return new Subscription(endpoint, options);
}

export const REPLAY_CHUNK = 500; // frames asked for per replay request
export const UPLOAD_CHUNK_BYTES = 1 << 20; // per upload_chunk request: the server takes up to its reply's chunk_bytes
export const FETCH_CHUNK_BYTES = 1 << 20; // per output_chunk request (bench/upload.py): the server sends up to 8 MiB
const CATCH_UP_WAIT_MS = 100;
const IDLE_REPLAY_MS = 1000; // a quiet live stream may have lost its last messages: check the log this often
const REPLAY_TYPES = [...PUBLIC_TYPES, "replay_end"];

/** One request on a history (DEALER) socket: the job's logged messages from frame `from`, and the replay_end. */
async function requestReplay(socket, job, from, count) {
  await socket.send(pack({ cmd: "replay", job, from, count }));
  const messages = [];
  while (true) {
    let topic, parts;
    try {
      [topic, ...parts] = await socket.receive();
    } catch (error) {
      if (error.code === "EAGAIN" && !socket.closed) {
        throw new TimeoutError(`no replay of job ${job} within ${socket.receiveTimeout} ms`);
      }
      throw error;
    }
    const message = checkHeader(decode(parts), topic.toString(), REPLAY_TYPES);
    if (message.type === "replay_end") {
      if (message.error) throw new Error(`replay refused: ${message.error}`);
      return { messages, end: message };
    }
    messages.push(message);
  }
}

function historySocket(history, timeoutMs, curve) {
  const socket = new zmq.Dealer({ linger: 0, receiveTimeout: timeoutMs ?? -1, ...curveOptions(curve) });
  socket.connect(history);
  return socket;
}

/**
 * One request to a history endpoint (the track stage's ROUTER): `job`'s logged
 * messages from frame `from` (job_start, at most `count` frames with the track
 * events among them, job_end once reached) and the closing replay_end
 * `{next, done}`. Throws when the request is refused, `TimeoutError` after `timeoutMs`.
 */
export async function replay(history, job, from, count = REPLAY_CHUNK, { timeoutMs, curve } = {}) {
  const socket = historySocket(history, timeoutMs, curve);
  try {
    return await requestReplay(socket, job, from, count);
  } finally {
    socket.close();
  }
}

/** Passes each message of one job once, frames in index order from `start`. */
class Sequencer {
  nextIndex;
  seenStart = false;
  #seenEvents = new Set();

  constructor(start) {
    this.nextIndex = start;
  }

  admit(message) {
    switch (message.type) {
      case "job_start": {
        const fresh = !this.seenStart;
        this.seenStart = true;
        return fresh;
      }
      case "frame":
        if (message.index !== this.nextIndex) return false;
        this.nextIndex += 1;
        return true;
      case "track_event": {
        const key = `${message.index}/${message.event}/${message.track_id}`;
        const fresh = !this.#seenEvents.has(key);
        this.#seenEvents.add(key);
        return fresh;
      }
      default:
        return true; // job_end
    }
  }
}

/**
 * Every message of one job from frame `start`, in order, no gaps, no
 * duplicates, until its job_end (the ZeroMQ guide's Clone pattern, as
 * bus/client.py's follow): subscribe to the live stream first, then catch up
 * from the job's log over the history link, then carry on live; whenever the
 * live stream skips a frame, the missing frames are fetched from the log.
 */
export class Follower {
  #live;
  #log;
  #job;
  #start;
  #timeoutMs;
  #signal;
  #onAbort = () => this.close();

  constructor(results, history, job, { start = 0, timeoutMs, signal, curve } = {}) {
    signal?.throwIfAborted();
    this.#job = job;
    this.#start = start;
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    this.#live = new zmq.Subscriber({ linger: 0, receiveHighWaterMark: 1000, receiveTimeout: CATCH_UP_WAIT_MS,
                                      ...curveOptions(curve) });
    this.#live.connect(results);
    this.#live.subscribe(`${job}/`);
    this.#log = historySocket(history, timeoutMs, curve);
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  async *[Symbol.asyncIterator]() {
    const job = this.#job;
    const sequence = new Sequencer(this.#start);
    let needReplay = true, liveSeen = false, idleMs = 0;
    try {
      while (true) {
        if (needReplay) {
          const { messages } = await requestReplay(this.#log, job, sequence.nextIndex, REPLAY_CHUNK);
          for (const message of messages) {
            if (!sequence.admit(message)) continue;
            yield message;
            if (message.type === "job_end") return;
          }
          needReplay = false;
        }
        const message = await this.#receiveLive();
        if (message !== null) {
          liveSeen = true;
          idleMs = 0;
          if (message.type === "frame" && (message.index > sequence.nextIndex || !sequence.seenStart)) {
            needReplay = true; // a gap, or frames before their job_start: the log has what the live stream lost
          } else if (sequence.admit(message)) {
            yield message;
            if (message.type === "job_end") return;
          }
          continue;
        }
        idleMs += CATCH_UP_WAIT_MS;
        if (this.#timeoutMs !== undefined && idleMs >= this.#timeoutMs) {
          throw new TimeoutError(`job ${job}: nothing new for ${this.#timeoutMs} ms`);
        }
        // Until the subscription is surely active, or when the stream has gone quiet, ask the log.
        needReplay = !liveSeen || idleMs % IDLE_REPLAY_MS === 0;
      }
    } catch (error) {
      this.#signal?.throwIfAborted();
      throw error;
    } finally {
      this.close();
    }
  }

  /** The next live message of the job, or null when none arrives within CATCH_UP_WAIT_MS. */
  async #receiveLive() {
    while (true) {
      let topic, parts;
      try {
        [topic, ...parts] = await this.#live.receive();
      } catch (error) {
        if (error.code === "EAGAIN" && !this.#live.closed) return null;
        throw error;
      }
      const message = checkHeader(decode(parts), topic.toString());
      if (message.job === this.#job) return message; // not a longer job id with this one as prefix
    }
  }

  close() {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const socket of [this.#live, this.#log]) if (!socket.closed) socket.close();
  }
}

/** Every message of `job` from frame `start` whenever you join: logged messages first, then live. */
export function follow(results, history, job, options = {}) {
  return new Follower(results, history, job, options);
}

/**
 * The frame messages of one job, in order from `start` (default 0): throws if
 * an index is skipped or repeated, if the job ends with an error, or if job_end
 * counts other frames. With `history`, the frames come from `follow`, so a late
 * start catches up from the job's log; without, from `subscribe` (subscribe
 * before the job starts).
 */
export function frames(endpoint, job, options = {}) {
  return frameStream(endpoint, job, options, (frame) => frame);
}

/** As `frames`, each frame converted to the app's per-frame shape (`appFrame`). */
export function appFrames(endpoint, job, { includeMesh = true, ...options } = {}) {
  return frameStream(endpoint, job, options, (frame, jobStart) => {
    if (jobStart === null) throw new Error(`job ${job}: frame ${frame.index} arrived before job_start`);
    return appFrame(frame, jobStart, { includeMesh });
  });
}

function frameStream(endpoint, job, { history, start = 0, signal, timeoutMs, curve }, convert) {
  if (history === undefined && start !== 0) throw new Error("frames from a start index need the history endpoint");
  const source = history === undefined
    ? subscribe(endpoint, { job, signal, timeoutMs, curve })
    : follow(endpoint, history, job, { start, signal, timeoutMs, curve });
  let ended;
  const jobEnd = new Promise((resolve) => { ended = resolve; });
  return {
    connected: source.connected ?? Promise.resolve(), // a follower catches up from the log: nothing to wait for
    jobEnd, // the job's job_end (its `outputs`), once iteration has reached it
    [Symbol.asyncIterator]: () => contiguousFrames(source, job, start, convert, ended),
    close: () => source.close(),
  };
}

async function* contiguousFrames(messages, job, start, convert, ended) {
  let next = start, jobStart = null;
  for await (const message of messages) {
    if (message.type === "job_start") {
      jobStart = message;
    } else if (message.type === "frame") {
      if (message.index !== next) throw new Error(`job ${job}: frame ${message.index} arrived where frame ${next} was due`);
      next += 1;
      yield convert(message, jobStart);
    } else if (message.type === "job_end") {
      if (message.status !== "ok") throw new Error(`job ${job} failed: ${message.error}`);
      if (message.frames !== next) throw new Error(`job ${job}: job_end reports ${message.frames} frames, ${next} arrived`);
      ended(message);
    }
  }
}

// --- result files: job_end.outputs ----------------------------------------------------------

/** Result files of a job failed: `outputs` holds those complete, `errors` {output: why} the others. */
export class OutputError extends Error {
  name = "OutputError";

  constructor(job, outputs, errors) {
    super(`job ${job}: ${Object.entries(errors).map(([name, error]) => `${name}: ${error}`).join("; ")}`);
    this.outputs = outputs;
    this.errors = errors;
  }
}

/**
 * The result files a job_end lists, each complete on disk when it was published (bus/client.py's
 * result_files): {output (`app_json`, `overlay`, `phalp_pkl`, `report`, `out`, ...): absolute path on
 * posebus's host, or the list of paths of a per-track output (`gltf`, `bvh`)}. Throws `OutputError`
 * if any asked-for file failed.
 */
export function resultFiles(jobEnd) {
  const outputs = jobEnd.outputs ?? {}, errors = jobEnd.output_errors ?? {};
  if (Object.keys(errors).length > 0) throw new OutputError(jobEnd.job, outputs, errors);
  return outputs;
}

// --- the app's per-frame shape: outputs/app_json.py's _frame and _person --------------------

const DECIMALS = 6; // as outputs/app_json.py: float32 carries about 7 significant digits

/** numpy's round(x, 6): scale, round half to even, scale back; NaN becomes null. */
function rounded(value) {
  if (Number.isNaN(value)) return null;
  const scale = 10 ** DECIMALS;
  const scaled = value * scale;
  let whole = Math.round(scaled); // rounds halves up
  if (whole - scaled === 0.5 && whole % 2 !== 0) whole -= 1;
  return whole / scale;
}

/** An NDArray as nested arrays by its shape, each value passed through `convert`. */
function nested({ shape, data }, convert = rounded) {
  const strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((a, b) => a * b, 1));
  const build = (axis, offset) => axis === shape.length
    ? convert(data[offset])
    : Array.from({ length: shape[axis] }, (_, i) => build(axis + 1, offset + i * strides[axis]));
  return build(0, 0);
}

const facesOfJob = new WeakMap(); // job_start -> its mesh_faces as nested arrays, built once per job

function meshFaces(jobStart) {
  if (!facesOfJob.has(jobStart)) {
    facesOfJob.set(jobStart, jobStart.mesh_faces == null ? null : nested(jobStart.mesh_faces, Number));
  }
  return facesOfJob.get(jobStart);
}

/**
 * One frame message in the app's per-frame shape (outputs/app_json.py's
 * `_frame`; docs/outputs.md): `{frameNumber, timestamp (s), persons}`.
 * `jobStart` is the job's job_start (joint names, intrinsics, mesh faces).
 */
export function appFrame(frame, jobStart, { includeMesh = true } = {}) {
  return {
    frameNumber: frame.index,
    timestamp: frame.pts_ms / 1000,
    persons: frame.people.map((person) => appPerson(person, jobStart, includeMesh)),
  };
}

function appPerson(person, jobStart, includeMesh) {
  const names = jobStart.joints.keypoints_2d;
  const keypoints2d = nested(person.keypoints_2d);
  // keypoints_3d come from the same detection as keypoints_2d, so they share its per-joint confidence.
  const confidence = keypoints2d.map((row) => row[2]);
  const keypoints3d = person.keypoints_3d == null ? null : nested(person.keypoints_3d);
  const smpl = person.smpl;
  const hasMesh = includeMesh && person.vertices != null;
  return {
    personId: person.track_id,
    confidence: person.confidence,
    tracked: true,
    trackingState: person.state,
    backfilled: person.backfilled === true,
    trackingConfidence: person.confidence,
    framesSinceSeen: person.frames_since_seen,
    camera: cameraOf(person, keypoints3d, jobStart),
    smpl: smpl == null ? null
      : { globalOrient: nested(smpl.global_orient), bodyPose: nested(smpl.body_pose), betas: nested(smpl.betas) },
    meshVertices: hasMesh ? nested(person.vertices) : null,
    meshFaces: hasMesh ? meshFaces(jobStart) : null,
    bbox: nested(person.bbox),
    keypoints2d: namedJoints(names, keypoints2d.map((row) => row.slice(0, 2)), confidence),
    keypoints3d: keypoints3d === null ? null : namedJoints(names, keypoints3d, confidence),
    jointAngles: { ...person.joint_angles },
  };
}

/**
 * The app's `camera {tx, ty, tz, focalLength, principalPoint}` of one person:
 * HMR 2.0's camera-frame translation, or for BlazePose (no body model) the
 * pelvis of its camera-frame keypoints_3d with the job's intrinsics. Null when neither is known.
 */
function cameraOf(person, keypoints3d, jobStart) {
  if (person.camera != null) {
    const [tx, ty, tz] = nested(person.camera.translation);
    return { tx, ty, tz, focalLength: person.camera.focal_length, principalPoint: nested(person.camera.principal_point) };
  }
  const intrinsics = jobStart.intrinsics;
  if (keypoints3d === null || intrinsics == null) return null;
  const [tx, ty, tz] = keypoints3d[jobStart.joints.keypoints_3d.indexOf("pelvis")];
  if (tx === null) return null;
  return { tx, ty, tz, focalLength: intrinsics.fx, principalPoint: [intrinsics.cx, intrinsics.cy] };
}

/** Rounded (J, 2 or 3) rows -> `[{name, position {x, y[, z]}, confidence}]`; a missing joint has position null, confidence 0. */
function namedJoints(names, points, confidence) {
  return names.slice(0, points.length).map((name, i) => {
    const point = points[i];
    const position = point.includes(null) ? null : Object.fromEntries(point.map((value, axis) => ["xyz"[axis], value]));
    return { name, position, confidence: position ? confidence[i] : 0 };
  });
}

// --- the app's whole document: outputs/app_json.py's app_document and outputs/backfill.py ----------

const PARSER_VERSION = "posebus-1";
const KEYPOINTS_3D_FRAME = "camera: x right, y down, z forward, metres, translation included";
const MESH_FRAME = "SMPL (neutral) with global orientation, no translation: add camera.tx/ty/tz for the camera frame";
const CONFIDENCE_DECAY = 0.9; // tracking.tracker's confidence_decay

/** Position of the first frame with anybody; null when nobody is ever published. */
function firstWithPerson(frames) {
  const found = frames.findIndex((frame) => frame.people.length > 0);
  return found < 0 ? null : found;
}

/** Frames before the first that has anybody hold that frame's first person: state held, backfilled. */
function holdFirstPerson(frames) {
  const first = firstWithPerson(frames);
  if (!first) return frames; // nobody at all, or somebody from the first frame on
  const { raw, ...person } = frames[first].people[0]; // raw: observed frames only
  const held = [];
  let confidence = person.confidence;
  for (let position = first - 1; position >= 0; position--) {
    confidence *= CONFIDENCE_DECAY; // one multiplication a frame: the same float as Python's
    held.push({ ...frames[position], people: [{ ...person, state: "held", confidence, backfilled: true,
      frames_since_seen: person.frames_since_seen + first - position }] });
  }
  return [...held.reverse(), ...frames.slice(first)];
}

/**
 * One job's messages (job_start, its frames, job_end) as the app's document: what `launch.py --app-json`
 * writes (outputs/app_json.py's `app_document`; a test holds the two equal). Frames before anybody is first
 * published hold the first person published (`backfilled: true`), so every frame has the rider once anybody
 * is seen; `metadata.personSeen` is false when nobody is. Throws when the job did not end cleanly or its
 * frames are not exactly 0..N-1 (the app pairs array position with video frame: never renumber).
 */
export function appDocument(messages, { videoId, includeMesh = true } = {}) {
  const last = (type) => messages.findLast((message) => message.type === type) ?? null;
  const jobStart = last("job_start"), jobEnd = last("job_end");
  const frames = messages.filter((message) => message.type === "frame").sort((a, b) => a.index - b.index);
  const job = (jobStart ?? jobEnd ?? frames[0])?.job;
  if (jobStart === null) throw new Error(`job ${job}: no job_start (the source never opened)`);
  if (jobEnd === null || jobEnd.status !== "ok") {
    throw new Error(`job ${job}: did not end cleanly: ${jobEnd?.error ?? "no job_end"}`);
  }
  if (frames.length !== jobEnd.frames || frames.some((frame, i) => frame.index !== i)) {
    throw new Error(`job ${job}: frame indices are not 0..${jobEnd.frames - 1} (got ${frames.length} frames)`);
  }
  const firstSeen = firstWithPerson(frames);
  const documentFrames = holdFirstPerson(frames).map((frame) => appFrame(frame, jobStart, { includeMesh }));
  return {
    videoId: videoId ?? job,
    fps: jobStart.fps,
    frameCount: documentFrames.length,
    duration: documentFrames.length / jobStart.fps,
    resolution: [jobStart.width, jobStart.height],
    frames: documentFrames,
    metadata: {
      parserVersion: PARSER_VERSION,
      source: jobStart.source,
      detector: jobStart.detector ?? "unknown",
      jointNames: [...jobStart.joints.keypoints_3d],
      angleKeys: [...(jobStart.angles ?? [])],
      intrinsics: jobStart.intrinsics ?? null,
      keypoints3dFrame: KEYPOINTS_3D_FRAME,
      meshFrame: MESH_FRAME,
      personSeen: firstSeen !== null,
      firstPersonFrame: firstSeen,
      backfilledFrames: firstSeen ?? 0,
    },
  };
}

/**
 * Follow `job` (from the job's log, whenever you call it: see `follow`) to its job_end and return its app
 * document (`appDocument`): metadata and every frame, the way the app stores it. Resolves when the job ends.
 */
export async function jobDocument(results, history, job, { videoId, includeMesh = true, timeoutMs, signal, curve } = {}) {
  const messages = [];
  for await (const message of follow(results, history, job, { timeoutMs, signal, curve })) {
    if (message.type !== "track_event") messages.push(message);
  }
  return appDocument(messages, { videoId, includeMesh });
}

/** Requests to a `launch.py serve` control socket (REQ with a timeout; Lazy Pirate). */
export class Control {
  #socket;
  #queue = Promise.resolve(); // REQ allows one request in flight: later calls wait their turn

  #curve;

  constructor(endpoint, { timeoutMs = 10_000, curve } = {}) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
    this.#curve = curveOptions(curve);
    this.#socket = this.#connect();
  }

  #connect() {
    const socket = new zmq.Request({ linger: 0, sendTimeout: this.timeoutMs, receiveTimeout: this.timeoutMs,
                                     ...this.#curve });
    socket.connect(this.endpoint);
    return socket;
  }

  /** Send one request map (`{cmd, ...}`) and return the reply map. */
  request(request) {
    const reply = this.#queue.then(() => this.#exchange(request));
    this.#queue = reply.catch(() => {});
    return reply;
  }

  async #exchange(request) {
    try {
      await this.#socket.send(pack(request));
      return decode(await this.#socket.receive());
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
      this.#socket.close(); // a REQ socket without its reply is stuck: start afresh
      this.#socket = this.#connect();
      throw new TimeoutError(`no reply from ${this.endpoint} within ${this.timeoutMs} ms`);
    }
  }

  /** Submit a source; `job` picks the job id, every other option goes to the pipeline. Returns the job id. */
  async submit(source, { job, ...options } = {}) {
    const reply = await this.request({ cmd: "submit", source, options, ...(job ? { job } : {}) });
    if (!reply.ok) throw new Error(reply.error);
    return reply.job;
  }

  status(job) {
    return this.request({ cmd: "status", job });
  }

  list() {
    return this.request({ cmd: "list" });
  }

  health() {
    return this.request({ cmd: "health" });
  }

  /** Cancel a queued or running job: it then ends with job_end status "error", error "cancelled". The reply map. */
  cancel(job) {
    return this.request({ cmd: "cancel", job });
  }

  /**
   * Wait until `health` says `ready` (every worker has loaded its model); resolves to that health reply.
   * Rejects with `TimeoutError` after `timeoutMs`, naming the detectors still loading.
   */
  async waitUntilReady({ timeoutMs = 300_000, pollMs = 250 } = {}) {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const health = await this.health();
      if (health.ready) return health;
      if (Date.now() >= deadline) {
        const loading = Object.entries(health.detectors ?? {}).map(([kind, n]) => `${kind} ${n.ready} of ${n.workers} workers`);
        throw new TimeoutError(`${this.endpoint} not ready within ${timeoutMs} ms (${loading.join(", ") || "no health"})`);
      }
      await sleep(pollMs);
    }
  }

  /**
   * Send a clip's bytes (a Buffer or Uint8Array, or the path of a file) in chunks over the control socket
   * (launcher/uploads.py); resolves to the upload id for `submitUpload`. Rejects when the server refuses it
   * (larger than its --max-upload-mb, a chunk refused: the upload is then discarded).
   */
  async upload(data, { name, chunkBytes = UPLOAD_CHUNK_BYTES } = {}) {
    if (typeof data === "string") {
      name ??= basename(data);
      data = readFileSync(data);
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    const started = await this.request({ cmd: "upload", name: name ?? "upload", size: bytes.byteLength });
    if (!started.ok) throw new Error(started.error);
    const step = Math.min(chunkBytes, started.chunk_bytes);
    for (let offset = 0; offset < bytes.byteLength; offset += step) {
      const sent = await this.request({ cmd: "upload_chunk", upload: started.upload, offset,
                                        data: bytes.subarray(offset, offset + step) });
      if (!sent.ok) throw new Error(sent.error);
    }
    return started.upload;
  }

  /** Submit a complete upload as a job's source (removed on the server once the job has ended); the job id. */
  async submitUpload(upload, { job, ...options } = {}) {
    const reply = await this.request({ cmd: "submit_upload", upload, options, ...(job ? { job } : {}) });
    if (!reply.ok) throw new Error(reply.error);
    return reply.job;
  }

  /**
   * The bytes of a finished job's result file, chunk by chunk over the control socket (launcher/results.py):
   * `output` is the option's name as the job's job_end lists it (`app_json`, `overlay`, `out`, ...), `index` one
   * file of a per-track output (`gltf`, `bvh`). Throws when the server refuses (no such job or output, the job
   * has not ended, the file changed since it ended).
   */
  async *outputChunks(job, output, { index, chunkBytes = FETCH_CHUNK_BYTES } = {}) {
    let offset = 0, size = null;
    while (true) {
      const reply = await this.request({ cmd: "output_chunk", job, output, offset, max_bytes: chunkBytes,
                                         ...(index === undefined ? {} : { index }) });
      if (!reply.ok) throw new Error(reply.error);
      if (size !== null && reply.size !== size) throw new Error(`job ${job}'s ${output} file changed size while it was fetched`);
      size = reply.size;
      offset += reply.data.byteLength;
      yield reply.data;
      if (reply.done) return;
      if (reply.data.byteLength === 0) throw new Error(`job ${job}'s ${output} file: no bytes at offset ${offset} of ${size}`);
    }
  }

  /**
   * Copy a finished job's result file (`outputChunks`) to the file `destination`, which appears only once
   * complete (written beside it under a temporary name, then renamed); resolves to the bytes copied.
   */
  async fetchOutput(job, output, destination, options = {}) {
    const temporary = join(dirname(destination), `.${basename(destination)}.${process.pid}.${Date.now()}.tmp`);
    const file = await open(temporary, "wx");
    let copied = 0;
    try {
      for await (const chunk of this.outputChunks(job, output, options)) {
        await file.write(chunk);
        copied += chunk.byteLength;
      }
      await file.close();
      await rename(temporary, destination);
      return copied;
    } catch (error) {
      await file.close().catch(() => {});
      await rm(temporary, { force: true });
      throw error;
    }
  }

  /** A finished job's result file (`outputChunks`), whole, in memory (a Buffer). */
  async outputBytes(job, output, options = {}) {
    const chunks = [];
    for await (const chunk of this.outputChunks(job, output, options)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  close() {
    this.#socket.close();
  }
}
