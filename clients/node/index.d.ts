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
  /** Set when decode downscaled large (8K) frames: the size the detectors saw. Pixel values are in width × height anyway. */
  downscaled?: { width: number; height: number };
  detector?: string;
  /** Joint names per keypoint field, e.g. joints.keypoints_3d[i] names row i. */
  joints?: Record<string, string[]>;
  angles?: string[];
  intrinsics?: { fx: number; fy: number; cx: number; cy: number };
  /** HMR 2.0: the mesh's 13776×3 vertex indices, the same for every frame. */
  mesh_faces?: NDArray;
  options?: unknown;
  /** The source as the backend gave it when posebus read it elsewhere: a Windows path (then `source` is its WSL path) or `upload:<name>`. */
  source_from?: string;
  /** A one-off run (`launch.py VIDEO` without `--results`): the ports the system picked. */
  endpoints?: { results: string; history: string };
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
  /**
   * The job's result files complete on disk when this job_end was published (it waits for them), by the
   * option that asked for each (`app_json`, `overlay`, `phalp_pkl`, `report`, `out`, ...): an absolute
   * path on posebus's host, or the paths of a per-track output (`gltf`, `bvh`). `{}` when none were asked for.
   */
  outputs?: Record<string, string | string[]>;
  /** Asked-for files that failed: output -> one-line error. */
  output_errors?: Record<string, string>;
}

/** A track was born, confirmed, lost, re-identified or ended at frame `index`. */
export interface TrackEventMessage extends Header {
  type: "track_event";
  index: number;
  event: "born" | "confirmed" | "lost" | "reidentified" | "ended";
  track_id: number;
}

export type ResultMessage = JobStartMessage | FrameMessage | TrackEventMessage | JobEndMessage;

export const PUBLIC_TYPES: readonly ["job_start", "frame", "track_event", "job_end"];
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

/** CURVE keys of a backend on another machine (docs/security.md): Z85 strings, 40 characters each. */
export interface CurveKeys {
  /** The server's public key (`python -m bus.keys show server`). */
  serverKey: string;
  /** This backend's own key pair. */
  publicKey: string;
  secretKey: string;
}

/** `CurveKeys` from a posebus key store: `<ownName>.key_secret` and the server's `<serverName>.key` (default "server"). */
export function curveFromKeyStore(folder: string, ownName: string, serverName?: string): CurveKeys;

export interface SubscribeOptions {
  /** Only this job's messages; iteration ends after its job_end. */
  job?: string;
  /** Raw topic prefixes to subscribe to instead of the default (`<job>/` for a job, or everything). */
  topics?: string[];
  /** Aborting closes the socket; iteration then throws the signal's reason. */
  signal?: AbortSignal;
  /** Throw `TimeoutError` when nothing arrives for this long (default: wait forever). */
  timeoutMs?: number;
  /** Connect over CURVE (a server started with `--curve-name`). */
  curve?: CurveKeys;
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

/** The history link's closing message of one replay request. */
export interface ReplayEndMessage extends Header {
  type: "replay_end";
  /** The frame index after the last one replayed: where the next request starts. */
  next: number;
  /** Whether the job's job_end was reached. */
  done: boolean;
  error: string | null;
}

export const REPLAY_CHUNK: 500;

/**
 * One request to a history endpoint (the track stage's ROUTER, `launch.py --history`):
 * the job's logged job_start, at most `count` frames from `from` with the track
 * events among them, its job_end once reached; then the replay_end. Rejects
 * when the request is refused, with `TimeoutError` after `timeoutMs`.
 */
export function replay(history: string, job: string, from: number, count?: number,
  options?: { timeoutMs?: number; curve?: CurveKeys }): Promise<{ messages: ResultMessage[]; end: ReplayEndMessage }>;

export interface FollowOptions {
  /** The first frame index wanted (default 0): the last index handled + 1 resumes a stopped follower. */
  start?: number;
  /** Aborting closes the sockets; iteration then throws the signal's reason. */
  signal?: AbortSignal;
  /** Throw `TimeoutError` when nothing new arrives (and the history link does not answer) for this long. */
  timeoutMs?: number;
  /** Connect both sockets over CURVE (a server started with `--curve-name`). */
  curve?: CurveKeys;
}

/**
 * Every message of one job from frame `start`, in order, no gaps, no duplicates,
 * until its job_end, whenever you join (bus/client.py's follow, the Clone
 * pattern): job_start first, then the frames from `start` with their track
 * events, then job_end. Connected and subscribed from construction.
 */
export class Follower implements AsyncIterable<ResultMessage> {
  constructor(results: string, history: string, job: string, options?: FollowOptions);
  [Symbol.asyncIterator](): AsyncGenerator<ResultMessage, void, undefined>;
  /** Close the sockets; needed only when the follower is never iterated to its end. */
  close(): void;
}

export function follow(results: string, history: string, job: string, options?: FollowOptions): Follower;

export interface FrameStream<T = FrameMessage> extends AsyncIterable<T> {
  /** Resolves once connected to the publisher (at once with `history`: the log covers what was missed). */
  readonly connected: Promise<void>;
  /** The job's job_end (with its `outputs`), once iteration has reached it. */
  readonly jobEnd: Promise<JobEndMessage>;
  close(): void;
}

export interface FramesOptions extends FollowOptions {
  /** The history endpoint: frames come from `follow`, so a late start catches up from the job's log. */
  history?: string;
}

/**
 * One job's frame messages in order from `start` (which needs `history`). Iteration throws if an index is
 * skipped or repeated, if the job ends with an error, or if job_end counts other frames.
 */
export function frames(endpoint: string, job: string, options?: FramesOptions): FrameStream;

/** A named joint of the app's shape; a joint the detector lacks has position null and confidence 0. */
export interface AppJoint<P> {
  name: string;
  position: P | null;
  confidence: number | null;
}

/** One person in the app's shape (outputs/app_json.py `_person`, docs/outputs.md). Numbers rounded to 6 decimals. */
export interface AppPerson {
  personId: number;
  confidence: number;
  tracked: true;
  trackingState: TrackState;
  /** True on frames before anybody was first published: this person is held there from the first frame that has one (files and `appDocument` only; the live stream has nobody there). */
  backfilled: boolean;
  trackingConfidence: number;
  framesSinceSeen: number;
  /** HMR 2.0's translation and focal length, or for BlazePose the pelvis of keypoints3d and the job's intrinsics. */
  camera: { tx: number; ty: number; tz: number; focalLength: number; principalPoint: number[] } | null;
  /** Rotation matrices: globalOrient 1×3×3, bodyPose 23×3×3; betas 10. Null for BlazePose. */
  smpl: { globalOrient: number[][][]; bodyPose: number[][][]; betas: number[] } | null;
  meshVertices: number[][] | null;
  /** job_start.mesh_faces, the same array in every frame. */
  meshFaces: number[][] | null;
  /** [x, y, w, h] pixels. */
  bbox: number[];
  keypoints2d: AppJoint<{ x: number; y: number }>[];
  keypoints3d: AppJoint<{ x: number; y: number; z: number }>[] | null;
  jointAngles: Record<string, number | null>;
}

/** One frame in the app's per-frame shape (outputs/app_json.py `_frame`). */
export interface AppFrame {
  frameNumber: number;
  /** Seconds (pts_ms / 1000). */
  timestamp: number;
  /** The primary subject (the rider) first. */
  persons: AppPerson[];
}

/** One frame message in the app's shape; `jobStart` gives joint names, intrinsics and mesh faces. */
export function appFrame(frame: FrameMessage, jobStart: JobStartMessage, options?: { includeMesh?: boolean }): AppFrame;

/** As `frames`, each frame in the app's shape (`includeMesh: false` leaves out vertices and faces). */
export function appFrames(endpoint: string, job: string,
  options?: FramesOptions & { includeMesh?: boolean }): FrameStream<AppFrame>;

/** The app's document of one job (outputs/app_json.py's `app_document`; docs/outputs.md): what `--app-json` writes. */
export interface AppDocument {
  videoId: string;
  /** The container's rate (29.97 stays 29.97). */
  fps: number;
  frameCount: number;
  /** Seconds: frameCount / fps. */
  duration: number;
  resolution: [number, number];
  /** One per decoded frame, in order; every frame has the rider once anybody is seen in the job. */
  frames: AppFrame[];
  metadata: {
    parserVersion: string;
    source: string;
    detector: string;
    jointNames: string[];
    angleKeys: string[];
    intrinsics: { fx: number; fy: number; cx: number; cy: number } | null;
    keypoints3dFrame: string;
    meshFrame: string;
    /** False when nobody was seen in the whole job (then every frame's persons is empty). */
    personSeen: boolean;
    /** The first frame the live stream had anybody on; null when nobody. */
    firstPersonFrame: number | null;
    /** Frames before it, holding that person (`persons[0].backfilled`). */
    backfilledFrames: number;
  };
}

/** One job's messages (job_start, frames, job_end) as the app's document; throws if the job did not end cleanly or has a gap. */
export function appDocument(messages: ResultMessage[], options?: { videoId?: string; includeMesh?: boolean }): AppDocument;

/** Follow a job (from its log: any time, even after it ended) to its job_end; its app document. */
export function jobDocument(results: string, history: string, job: string,
  options?: { videoId?: string; includeMesh?: boolean; timeoutMs?: number; signal?: AbortSignal; curve?: CurveKeys }): Promise<AppDocument>;

/** Result files of a job failed: `outputs` are those complete, `errors` output -> why for the others. */
export class OutputError extends Error {
  readonly outputs: Record<string, string | string[]>;
  readonly errors: Record<string, string>;
}

/** A job_end's `outputs` (each file complete on disk); throws `OutputError` if any asked-for file failed. */
export function resultFiles(jobEnd: JobEndMessage): Record<string, string | string[]>;

export interface ControlReply {
  ok: boolean;
  error?: string;
  [field: string]: unknown;
}

export interface JobRecord {
  id: string;
  source: string;
  state: "queued" | "running" | "done" | "failed";
  /** While queued (all `--max-jobs` lanes busy): 1 runs next; otherwise null. */
  queue_position: number | null;
  /** The job's options as submitted, with the detector. */
  options: Record<string, unknown>;
  frames: number;
  with_person: number;
  /** Frames published with `detection_failed`. */
  detection_failed: number;
  error: string | null;
  /** Once the job has ended: its result files, as its job_end listed them (fetch them with `fetchOutput`). */
  outputs?: Record<string, string | string[]>;
  /** Once the job has ended: asked-for files that could not be written, option -> one-line error. */
  output_errors?: Record<string, string>;
}

export type StatusReply = ControlReply & Partial<JobRecord>;
export type ListReply = ControlReply & { jobs?: JobRecord[] };
/** One stage process as the launcher sees it. */
export interface StageProcess {
  pid: number;
  alive: boolean;
  /** Seconds since its last heartbeat; null before the first. */
  since_heartbeat_s: number | null;
}

export type HealthReply = ControlReply & {
  stages?: Record<string, boolean>;
  processes?: Record<string, StageProcess>;
  /** A stage silent this long is killed and handled like a dead one; 0: the watchdog is off. */
  heartbeat_timeout_s?: number;
  /** Detect worker name -> times restarted. */
  restarts?: Record<string, number>;
  detector?: string;
  /** Every stage runs and has sent a heartbeat, every detect worker after loading its model. */
  ready?: boolean;
  /** Per detector kind: workers (local and remote), how many have loaded their model, and how many run on other hosts (--worker-links). */
  detectors?: Record<string, { workers: number; ready: number; remote: number }>;
};

export const UPLOAD_CHUNK_BYTES: number;
/** Bytes asked for per `output_chunk` request by default (1 MiB; a reply carries at most 8 MiB). */
export const FETCH_CHUNK_BYTES: number;

/** Which file of a job's outputs: `index` picks one file of a per-track output (`gltf`, `bvh`). */
export interface OutputFetchOptions {
  index?: number;
  /** Bytes asked for per request (the server sends at most 8 MiB). */
  chunkBytes?: number;
}

/** Requests to a `launch.py serve` control socket: REQ with a timeout, a fresh socket after each timeout. */
export class Control {
  constructor(endpoint: string, options?: { timeoutMs?: number; curve?: CurveKeys });
  readonly endpoint: string;
  readonly timeoutMs: number;
  /** Send one request map (`{cmd, ...}`); calls made together are sent one after another. */
  request(request: { cmd: string; [field: string]: unknown }): Promise<ControlReply>;
  /** Submit a source; `job` picks the job id, other options go to the pipeline. Resolves to the job id; rejects when `ok` is false. */
  submit(source: string, options?: { job?: string; [option: string]: unknown }): Promise<string>;
  status(job: string): Promise<StatusReply>;
  list(): Promise<ListReply>;
  health(): Promise<HealthReply>;
  /** Cancel a queued or running job (it ends with job_end status "error", error "cancelled"); the reply map. */
  cancel(job: string): Promise<ControlReply & { job?: string }>;
  /** Resolves to the health reply once `ready` (every worker has loaded its model); `TimeoutError` after `timeoutMs` (default 300000). */
  waitUntilReady(options?: { timeoutMs?: number; pollMs?: number }): Promise<HealthReply>;
  /** Send a clip (bytes, or a file's path) in chunks; resolves to the upload id. Rejects when refused (too large: `--max-upload-mb`). */
  upload(data: Uint8Array | ArrayBuffer | string, options?: { name?: string; chunkBytes?: number }): Promise<string>;
  /** Submit a complete upload as a job's source; resolves to the job id. An incomplete upload is discarded and rejected. */
  submitUpload(upload: string, options?: { job?: string; [option: string]: unknown }): Promise<string>;
  /** A finished job's result file, chunk by chunk: `output` as its job_end lists it (`app_json`, `overlay`, ...). Throws when refused (no such job or output, not ended yet). */
  outputChunks(job: string, output: string, options?: OutputFetchOptions): AsyncGenerator<Uint8Array, void, undefined>;
  /** Copy a finished job's result file to the file `destination` (appears once complete); resolves to the bytes copied. */
  fetchOutput(job: string, output: string, destination: string, options?: OutputFetchOptions): Promise<number>;
  /** A finished job's result file, whole, in memory. */
  outputBytes(job: string, output: string, options?: OutputFetchOptions): Promise<Uint8Array>;
  close(): void;
}
