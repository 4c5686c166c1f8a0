// Hand-written types for index.js. Field names follow the wire (snake_case); see ../../docs/protocol.md.

/** numpy dtype strings the pipeline may send (always little-endian). */
export type DType = "|b1" | "|u1" | "|i1" | "<u2" | "<i2" | "<u4" | "<i4" | "<u8" | "<i8" | "<f2" | "<f4" | "<f8";

export type AnyTypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | BigUint64Array | BigInt64Array | Float32Array | Float64Array;

/**
 * A numpy array off the wire: row-major (C-order) values in `data`, element
 * `[i, j]` of a 2-D array at `data[i * shape[1] + j]`. `data` is always aligned
 * for its element type and may share memory with the received message.
 * `"|b1"` arrives as a Uint8Array of 0/1, `"<f2"` widened to a Float32Array.
 */
export interface NDArray<T extends AnyTypedArray = AnyTypedArray> {
  dtype: DType;
  shape: number[];
  data: T;
}

export type Float32NDArray = NDArray<Float32Array>;

export type TrackState = "observed" | "predicted" | "interpolated" | "held";

/** One tracked person of a frame. */
export interface Person {
  track_id: number;
  state: TrackState;
  confidence: number;
  frames_since_seen: number;
  /** [x, y, w, h] in image pixels. */
  bbox: Float32NDArray;
  /** J×3: x, y in image pixels and a confidence; joint names in `JobStartMessage.joints.keypoints_2d`. NaN where a detector lacks a joint. */
  keypoints_2d: Float32NDArray;
  /** J×3 in metres, camera frame (x right, y down, z away) with translation; null when the detector gives no 3D. */
  keypoints_3d: Float32NDArray | null;
  /** Degrees, keys as in `JobStartMessage.angles` (e.g. leftKnee); null when not measurable. */
  joint_angles: Record<string, number | null>;
  // Detector-specific extras (HMR 2.0), present only when the detector provides them.
  smpl?: { global_orient: Float32NDArray; body_pose: Float32NDArray; betas: Float32NDArray };
  camera?: { translation: Float32NDArray; focal_length: number; principal_point: Float32NDArray };
  vertices?: Float32NDArray;
  keypoints_3d_native?: Float32NDArray;
  appearance?: Float32NDArray;
}

interface Header {
  schema: 1;
  job: string;
}

export interface JobStartMessage extends Header {
  type: "job_start";
  source: string;
  fps: number;
  width: number;
  height: number;
  frame_count: number | null;
  detector?: string;
  /** Joint names per keypoint field, e.g. joints.keypoints_3d[i] names row i. */
  joints?: Record<string, string[]>;
  angles?: string[];
  intrinsics?: { fx: number; fy: number; cx: number; cy: number };
  options?: unknown;
}

export interface FrameMessage extends Header {
  type: "frame";
  /** 0-based decode order, contiguous within a job. */
  index: number;
  pts_ms: number;
  people: Person[];
  detection_failed?: boolean;
  /** Wall-clock seconds at which the frame passed each stage. */
  timestamps?: Record<string, number>;
}

export interface JobEndMessage extends Header {
  type: "job_end";
  frames: number;
  status: "ok" | "error";
  error?: string | null;
}

export type ResultMessage = JobStartMessage | FrameMessage | JobEndMessage;

export const PUBLIC_TYPES: readonly ["job_start", "frame", "job_end"];
export const SCHEMA: 1;

/** A message that cannot be decoded; the text says why in one line. */
export class CodecError extends Error {}

/** Nothing arrived (subscribe) or no reply came (Control) within the timeout. */
export class TimeoutError extends Error {}

/**
 * Decode ZeroMQ parts `[payload, ...buffers]` (without the topic part) into a
 * plain object; numpy arrays become `NDArray`s. Throws `CodecError`.
 */
export function decode(parts: ArrayLike<Uint8Array | ArrayBuffer>): Record<string, unknown>;

export interface SubscribeOptions {
  /** Only this job's messages; iteration ends after its job_end. */
  job?: string;
  /** Raw topic prefixes to subscribe to instead of the default (the job's three topics, or everything). */
  topics?: string[];
  /** Aborting closes the socket; iteration then throws the signal's reason. */
  signal?: AbortSignal;
  /** Throw `TimeoutError` when nothing arrives for this long (default: wait forever). */
  timeoutMs?: number;
}

/** Result messages as an async iterable; connected and subscribed from construction. */
export class Subscription implements AsyncIterable<ResultMessage> {
  constructor(endpoint: string, options?: SubscribeOptions);
  /** Resolves once connected to the publisher; the subscriptions go out right after. */
  readonly connected: Promise<void>;
  [Symbol.asyncIterator](): AsyncGenerator<ResultMessage, void, undefined>;
  /** Close the socket; needed only when the subscription is never iterated to its end. */
  close(): void;
}

export function subscribe(endpoint: string, options?: SubscribeOptions): Subscription;

export interface FrameStream extends AsyncIterable<FrameMessage> {
  readonly connected: Promise<void>;
  close(): void;
}

/**
 * One job's frame messages in order. Iteration throws if an index is skipped or
 * repeated, if the job ends with an error, or if job_end counts other frames.
 */
export function frames(endpoint: string, job: string, options?: Omit<SubscribeOptions, "job" | "topics">): FrameStream;

export interface ControlReply {
  ok: boolean;
  error?: string;
  [field: string]: unknown;
}

export interface JobRecord {
  id: string;
  source: string;
  state: "queued" | "running" | "done" | "failed";
  frames: number;
  with_person: number;
  error: string | null;
}

export type StatusReply = ControlReply & Partial<JobRecord>;
export type ListReply = ControlReply & { jobs?: JobRecord[] };
export type HealthReply = ControlReply & { stages?: Record<string, boolean>; detector?: string };

/** Requests to a `launch.py serve` control socket: REQ with a timeout, a fresh socket after each timeout. */
export class Control {
  constructor(endpoint: string, options?: { timeoutMs?: number });
  readonly endpoint: string;
  readonly timeoutMs: number;
  /** Send one request map (`{cmd, ...}`); calls made together are sent one after another. */
  request(request: { cmd: string; [field: string]: unknown }): Promise<ControlReply>;
  /** Submit a source; `job` picks the job id, other options go to the pipeline. Resolves to the job id; rejects when `ok` is false. */
  submit(source: string, options?: { job?: string; [option: string]: unknown }): Promise<string>;
  status(job: string): Promise<StatusReply>;
  list(): Promise<ListReply>;
  health(): Promise<HealthReply>;
  close(): void;
}
