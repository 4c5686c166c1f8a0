// decode() against messages encoded by the Python codec (test/fixtures.py), and against malformed ones.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { encode, ExtData } from "@msgpack/msgpack";

import { CodecError, decode } from "../index.js";

const TYPED_ARRAYS = {
  "|b1": Uint8Array, "|u1": Uint8Array, "|i1": Int8Array, "<u2": Uint16Array, "<i2": Int16Array,
  "<u4": Uint32Array, "<i4": Int32Array, "<u8": BigUint64Array, "<i8": BigInt64Array,
  "<f2": Float32Array, "<f4": Float32Array, "<f8": Float64Array,
};

/** Fixtures from the project's Python: PYTHON if set (then it must work), else python3 (else skip). */
function loadFixtures() {
  const python = process.env.PYTHON ?? "python3";
  const run = spawnSync(python, [fileURLToPath(new URL("fixtures.py", import.meta.url))], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (run.status === 0) return { cases: JSON.parse(run.stdout) };
  const reason = `${python} test/fixtures.py failed: ${run.error?.message ?? run.stderr.trim().split("\n").at(-1)}`;
  if (process.env.PYTHON) throw new Error(reason);
  return { skip: `${reason} (set PYTHON to a Python with numpy and msgpack)` };
}

/** A copy of `bytes` starting `shift` bytes into a fresh ArrayBuffer, to control alignment. */
function shifted(bytes, shift) {
  const copy = new Uint8Array(new ArrayBuffer(bytes.length + shift), shift, bytes.length);
  copy.set(bytes);
  return copy;
}

function at(message, path) {
  return path.split(".").reduce((value, key) => value[key], message);
}

const fixtures = loadFixtures();

describe("decode of Python-encoded messages", { skip: fixtures.skip }, () => {
  for (const { name, parts, arrays } of fixtures.cases ?? []) {
    const raw = parts.map((hex) => Buffer.from(hex, "hex"));
    for (const shift of [0, 1, 2, 3, 4, 5, 6, 7]) {
      test(`${name}, parts shifted by ${shift} bytes`, () => {
        const message = decode(raw.map((part) => shifted(part, shift)));
        for (const [path, want] of Object.entries(arrays)) {
          const array = at(message, path);
          assert.equal(array.dtype, want.dtype, path);
          assert.deepEqual(array.shape, want.shape, path);
          assert.ok(array.data instanceof TYPED_ARRAYS[want.dtype], `${path} is a ${array.data.constructor.name}`);
          assert.equal(array.data.byteOffset % array.data.BYTES_PER_ELEMENT, 0, `${path} is aligned`);
          const values = Array.from(array.data, (v) => (typeof v === "bigint" ? String(v) : v));
          assert.deepEqual(values, want.values, path);
        }
      });
    }
  }

  test("scalars and nested maps come through as plain values", () => {
    const frame = fixtures.cases.find((c) => c.name === "frame with inline keypoints");
    const message = decode(frame.parts.map((hex) => Buffer.from(hex, "hex")));
    assert.equal(message.index, 7);
    assert.equal(message.pts_ms, 233.3);
    assert.deepEqual(message.people[0].joint_angles, { leftKnee: 170.5, rightKnee: null });
  });

  test("an aligned out-of-band part is wrapped without copying", () => {
    const mesh = fixtures.cases.find((c) => c.name === "mesh out of band");
    const parts = mesh.parts.map((hex) => shifted(Buffer.from(hex, "hex"), 0));
    const message = decode(parts);
    assert.equal(message.vertices.data.buffer, parts[1].buffer);
    assert.equal(message.faces.data.buffer, parts[2].buffer);
  });
});

describe("decode of malformed messages", () => {
  const array = (dtype, shape, data) => new ExtData(1, encode([dtype, shape, data]));
  const fourFloats = new Uint8Array(16);
  const cases = {
    "no parts": [[], /empty message/],
    "unknown dtype": [[encode({ a: array("<c8", [2], fourFloats) })], /dtype "<c8" not allowed/],
    "big-endian dtype": [[encode({ a: array(">f4", [4], fourFloats) })], /dtype ">f4" not allowed/],
    "size mismatch": [[encode({ a: array("<f4", [5], fourFloats) })], /shape \[5\] and dtype <f4 does not match 16 bytes/],
    "missing part": [[encode({ a: array("<f4", [4], 1) }), fourFloats], /missing part 2/],
    "negative shape": [[encode({ a: array("<f4", [-4], fourFloats) })], /bad array shape/],
    "data of the wrong kind": [[encode({ a: array("<f4", [4], "text") })], /neither bytes nor a part index/],
    "header not a triple": [[encode({ a: new ExtData(1, encode(["<f4", [4]])) })], /bad array header/],
    "unknown extension type": [[encode({ a: new ExtData(5, new Uint8Array(1)) })], /unknown extension type 5/],
    "truncated payload": [[encode({ a: "some text" }).subarray(0, 5)], /not a msgpack message/],
    "payload not a map": [[encode([1, 2])], /payload is not a map/],
  };
  for (const [name, [parts, error]] of Object.entries(cases)) {
    test(name, () => {
      assert.throws(() => decode(parts), (e) => e instanceof CodecError && error.test(e.message));
    });
  }
});
