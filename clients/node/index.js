// Node.js client for posebus: decode result messages, subscribe to the results
// socket, and send requests to the control socket. Mirrors bus/client.py.
import { decode as unpack, encode as pack } from "@msgpack/msgpack";
import * as zmq from "zeromq";

export const PUBLIC_TYPES = Object.freeze(["job_start", "frame", "job_end"]);
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
function checkHeader(message, topic) {
  if (!PUBLIC_TYPES.includes(message.type)) throw new Error(`unexpected message type ${JSON.stringify(message.type)}`);
  if (message.schema !== SCHEMA) throw new Error(`schema version ${JSON.stringify(message.schema)} is not ${SCHEMA}`);
  if (typeof message.job !== "string") throw new Error(`${message.type}.job is not a string`);
  if (topic !== `${message.type}/${message.job}`) throw new Error(`topic ${topic} does not match the ${message.type} message of job ${message.job}`);
  return message;
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

  constructor(endpoint, { job, topics, signal, timeoutMs } = {}) {
    signal?.throwIfAborted();
    this.#endpoint = endpoint;
    this.#job = job;
    this.#timeoutMs = timeoutMs;
    this.#signal = signal;
    this.#socket = new zmq.Subscriber({ linger: 0, receiveHighWaterMark: 1000, receiveTimeout: timeoutMs ?? -1 });
    this.connected = new Promise((resolve) => this.#socket.events.on("handshake", () => resolve()));
    this.#socket.connect(endpoint);
    this.#socket.subscribe(...(topics ?? (job !== undefined ? PUBLIC_TYPES.map((type) => `${type}/${job}`) : [""])));
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

/**
 * The frame messages of one job, in order: throws if an index is skipped or
 * repeated, if the job ends with an error, or if job_end counts other frames.
 */
export function frames(endpoint, job, options = {}) {
  const subscription = subscribe(endpoint, { ...options, job });
  return {
    connected: subscription.connected,
    [Symbol.asyncIterator]: () => contiguousFrames(subscription, job),
    close: () => subscription.close(),
  };
}

async function* contiguousFrames(subscription, job) {
  let next = 0;
  for await (const message of subscription) {
    if (message.type === "frame") {
      if (message.index !== next) throw new Error(`job ${job}: frame ${message.index} arrived where frame ${next} was due`);
      next += 1;
      yield message;
    } else if (message.type === "job_end") {
      if (message.status !== "ok") throw new Error(`job ${job} failed: ${message.error}`);
      if (message.frames !== next) throw new Error(`job ${job}: job_end reports ${message.frames} frames, ${next} arrived`);
    }
  }
}

/** Requests to a `launch.py serve` control socket (REQ with a timeout; Lazy Pirate). */
export class Control {
  #socket;
  #queue = Promise.resolve(); // REQ allows one request in flight: later calls wait their turn

  constructor(endpoint, { timeoutMs = 10_000 } = {}) {
    this.endpoint = endpoint;
    this.timeoutMs = timeoutMs;
    this.#socket = this.#connect();
  }

  #connect() {
    const socket = new zmq.Request({ linger: 0, sendTimeout: this.timeoutMs, receiveTimeout: this.timeoutMs });
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

  close() {
    this.#socket.close();
  }
}
