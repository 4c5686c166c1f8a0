"""A Node backend on another machine, through clients/node and the real zeromq package against a real
``launch.py serve`` with CURVE: readiness, an upload followed to its end and its result file fetched, a cancel,
refusals."""
import signal
import subprocess
import sys

from test_node_client import CLIENT, FRAMES, NODE, pytestmark, summary_of, tcp_endpoint  # noqa: F401 (pytestmark)

from bench.spooled import Spooled

from conftest import ROOT, VIDEO, stop

CURVE_BACKEND = """
    import { Control, TimeoutError, curveFromKeyStore, frames, subscribe } from "./index.js";
    const [controlEndpoint, results, keys, video] = process.argv.slice(1);
    const curve = curveFromKeyStore(keys, "backend", "server");
    const intruder = new Control(controlEndpoint, { timeoutMs: 1500, curve: curveFromKeyStore(keys, "intruder") });
    const intruderGot = await intruder.health().then(
      () => "a reply", (error) => error instanceof TimeoutError ? "timeout" : String(error));
    intruder.close();
    const control = new Control(controlEndpoint, { timeoutMs: 30_000, curve });
    const health = await control.waitUntilReady({ timeoutMs: 240_000 });

    const uploaded = frames(results, "node-upload", { timeoutMs: 60_000, curve });
    await uploaded.connected;
    const upload = await control.upload(video, { chunkBytes: 256 * 1024 });
    const submitted = await control.submitUpload(upload, { job: "node-upload", max_frames: 5 });
    const uploadedIndices = [];
    for await (const frame of uploaded) uploadedIndices.push(frame.index);
    const appJson = (await control.outputBytes("node-upload", "app_json")).toString("utf8");

    const long = subscribe(results, { job: "node-cancel", timeoutMs: 60_000, curve });
    await long.connected;
    await control.submit(video, { job: "node-cancel" });
    let cancelReply = null, end = null, published = 0;
    for await (const message of long) {
      if (message.type === "frame" && cancelReply === null) cancelReply = await control.cancel("node-cancel");
      if (message.type === "frame") published += 1;
      if (message.type === "job_end") end = message;
    }
    const tooBig = await control.upload(new Uint8Array(2 * 1024 * 1024 + 1), { name: "big.mp4" }).then(
      () => null, (error) => error.message);
    console.log(JSON.stringify({ intruderGot, health, upload, submitted, uploadedIndices, appJson, cancelReply, end,
                                 published, tooBig, unknownCancel: await control.cancel("no-such-job") }));
    control.close();
"""


def test_node_backend_over_curve_uploads_fetches_cancels_and_waits_until_ready(tmp_path):
    from bus.security import authorize, generate

    keys = tmp_path / "keys"
    generate("server", keys)
    authorize(generate("backend", keys)[0], keys)
    generate("intruder", keys)  # a key pair the server does not know
    results, control = tcp_endpoint(), tcp_endpoint()
    server = Spooled([sys.executable, "launch.py", "serve", "--results", results, "--control", control,
                      "--history", tcp_endpoint(), "--job-log", tmp_path / "logs", "--curve-name", "server",
                      "--curve-keys", keys, "--max-upload-mb", "2", "--app-json", tmp_path / "out",
                      "--log-level", "error"], cwd=ROOT, text=True)
    try:
        backend = subprocess.Popen([NODE, "--input-type=module", "-e", CURVE_BACKEND, control, results, keys, VIDEO],
                                   cwd=CLIENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        summary = summary_of(backend, timeout=300)
    finally:
        stop(server, sig=signal.SIGTERM)
    assert summary["intruderGot"] == "timeout"  # CURVE: an unknown key gets no reply at all
    assert summary["health"]["ready"] is True and summary["health"]["detectors"]["blazepose"]["ready"] == 1
    assert summary["submitted"] == "node-upload" and summary["uploadedIndices"] == list(range(5))
    assert summary["appJson"] == (tmp_path / "out" / "node-upload.json").read_text()  # over CURVE, not the path
    assert summary["cancelReply"] == {"ok": True, "job": "node-cancel"}
    end = summary["end"]
    assert (end["status"], end["error"]) == ("error", "cancelled") and end["frames"] == summary["published"] < FRAMES
    assert summary["tooBig"] == f"upload 'big.mp4' of {2 * 2**20 + 1} bytes exceeds the limit of {2 * 2**20} bytes " \
                                "(launch.py --max-upload-mb)"
    assert summary["unknownCancel"] == {"ok": False, "error": "no queued or running job no-such-job"}
