"""HMR 2.0 on live streams, for a lent GPU: ``python -m bench gpu`` (or ``python -m bench.gpu``).

S copies of vid.mp4 are decoded for real (``video.sources``, each stream on a thread, looped,
paced at its 30 fps like a camera) and served as the pipeline serves live jobs: frames taken
in turn, one per stream (``stages.decode.FairFrames``); person boxes found for real (the box
source the HMR 2.0 detector would use: ``detectors.hmr2.detector.make_box_source``, run on
``--box-threads`` threads, each stream always on the same one: a box source follows people per
job); the crops of every stream batched together into forwards of up to ``--crops-per-forward``
through HMR 2.0 with random weights (same arithmetic as the released ones: no checkpoint needed)
in fp32 and in bf16 (autocast, SMPL skinning in fp32 as the detector runs it).

Per S and precision: per-stream fps (frames finished a second, each stream; 30 keeps up),
total crops/s, peak GPU memory (torch's allocator), and latency from when a camera would have
captured the frame to its HMR 2.0 output, p50/p95. On a GPU the network is full-size ViT-H;
on a CPU (CI) it is a tiny one (``TINY``) and the table says so: same code, tiny numbers.

Budget on an H100 (one command, under 8 minutes): model build ~1 min, S = 1, 2, 4, 8, 16 in
two precisions at ``--seconds`` (default 20) each, plus warm-up. A lent machine reaches no
network: the BlazePose bundle (or torchvision's Faster R-CNN weights) must travel with the
working tree, e.g. copied under ``.devcache/posebus/blazepose`` and run with
``XDG_CACHE_HOME=.devcache``.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.timing import VIDEO, percentiles, table
from detectors.base import FrameImage
from detectors.hmr2.detector import make_box_source
from detectors.hmr2.model import HMR2, Hmr2Config
from detectors.hmr2.preprocess import crop_people
from detectors.hmr2.smpl import NUM_FACES, NUM_J19, NUM_JOINTS, NUM_POSE_BASIS, NUM_VERTICES
from stages.decode import FairFrames
from video.sources import open_source

STREAMS = (1, 2, 4, 8, 16)
PRECISIONS = ("fp32", "bf16")
TINY = Hmr2Config(embed_dim=64, depth=2, num_heads=2, decoder_dim=64, decoder_depth=1, decoder_heads=2,
                  decoder_dim_head=32, decoder_mlp_dim=64)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
STREAM_FPS = 30.0


def random_hmr2(config: Hmr2Config, device: torch.device) -> HMR2:
    """HMR 2.0 with random weights and a random but well-formed SMPL (its kinematic tree, weights that sum
    to one): the arithmetic of the released model, no checkpoint."""
    torch.manual_seed(0)
    model = HMR2(config)
    smpl = model.smpl

    def rows_sum_to_one(rows: int, columns: int) -> torch.Tensor:
        return torch.softmax(torch.randn(rows, columns), dim=1)

    smpl.v_template.copy_(torch.randn(NUM_VERTICES, 3) * 0.3)
    smpl.shapedirs.copy_(torch.randn_like(smpl.shapedirs) * 0.01)
    smpl.posedirs.copy_(torch.randn(NUM_POSE_BASIS, NUM_VERTICES * 3) * 0.001)
    smpl.J_regressor.copy_(rows_sum_to_one(NUM_JOINTS, NUM_VERTICES))
    smpl.lbs_weights.copy_(rows_sum_to_one(NUM_VERTICES, NUM_JOINTS))
    smpl.parents.copy_(torch.tensor(SMPL_PARENTS))
    smpl.faces_tensor.copy_(torch.randint(0, NUM_VERTICES, (NUM_FACES, 3)))
    smpl.joint_regressor_extra.copy_(rows_sum_to_one(NUM_J19, NUM_VERTICES))
    return model.requires_grad_(False).eval().to(device)


def box_source(name: str, device: torch.device):
    """The HMR 2.0 detector's box source; BlazePose where Faster R-CNN's weights cannot be had (a lent
    machine reaches no network: torchvision's cache must hold them)."""
    try:
        return make_box_source(name, device)
    except Exception as exc:  # torchvision missing, or its weights not in the cache
        if name == "blazepose":
            raise
        print(f"bench.gpu: box source {name} unavailable ({exc}); BlazePose instead", file=sys.stderr)
        return make_box_source("blazepose", device)


@dataclass
class Pending:
    """A frame between decode and its HMR 2.0 output."""

    frame: FrameImage
    captured: float  # when a camera would have taken it (the stream's start + pts)


class Stream(threading.Thread):
    """One live stream: vid.mp4 decoded over and over, each frame released at its capture time."""

    def __init__(self, job: str, out: queue.SimpleQueue, stop: threading.Event, started: float):
        super().__init__(daemon=True, name=job)
        self.job, self.out, self.stop, self.started = job, out, stop, started

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            for _, _, image in open_source(str(VIDEO)):
                captured = self.started + index / STREAM_FPS
                time.sleep(max(0.0, captured - time.monotonic()))
                if self.stop.is_set():
                    return
                self.out.put(Pending(FrameImage(self.job, index, index * 1000 / STREAM_FPS, image), captured))
                index += 1


class Boxes(threading.Thread):
    """A box-source thread: people boxes and crops for the frames of the streams given to it."""

    def __init__(self, box_source, work: queue.SimpleQueue, done: queue.SimpleQueue):
        super().__init__(daemon=True)
        self.box_source, self.work, self.done = box_source, work, done

    def run(self) -> None:
        while (pending := self.work.get()) is not None:
            (boxes,) = self.box_source([pending.frame])
            self.done.put((pending, crop_people(pending.frame.image, boxes.boxes).images))


@dataclass
class Trial:
    streams: int
    precision: str
    seconds: float
    frames: int = 0
    crops: int = 0
    forwards: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    memory_bytes: int = 0

    @property
    def per_stream_fps(self) -> float:
        return self.frames / self.seconds / self.streams


def run_trial(model: HMR2, device: torch.device, box_sources: list, streams: int, precision: str,
              seconds: float, crops_per_forward: int, warm_up_s: float) -> Trial:
    """S live streams for ``warm_up_s`` + ``seconds``; what was finished in the last ``seconds``."""
    stop, decoded, cropped = threading.Event(), queue.SimpleQueue(), queue.SimpleQueue()
    started = time.monotonic() + 0.5
    feeds = [Stream(f"stream-{s}", decoded, stop, started) for s in range(streams)]
    work = [queue.SimpleQueue() for _ in box_sources]
    boxers = [Boxes(source, q, cropped) for source, q in zip(box_sources, work)]
    for thread in (*feeds, *boxers):
        thread.start()
    trial, fair = Trial(streams, precision, seconds), FairFrames()
    waiting: list[tuple[Pending, np.ndarray]] = []
    measure_from, end = started + warm_up_s, started + warm_up_s + seconds
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    try:
        while time.monotonic() < end:
            while not decoded.empty():  # live frames, dealt out to the box threads in turn, one per stream
                pending = decoded.get()
                fair.add({"job": pending.frame.job, "index": pending.frame.index, "pending": pending}, live=True)
            while (message := fair.next()) is not None:
                pending = message["pending"]
                work[int(pending.frame.job.split("-")[1]) % len(work)].put(pending)
            while not cropped.empty():
                waiting.append(cropped.get())
            if not waiting:
                time.sleep(0.001)
                continue
            # One forward over the crops of every stream's frames that are ready, up to crops_per_forward.
            batch, count = [], 0
            while waiting and (not batch or count + len(waiting[0][1]) <= crops_per_forward):
                batch.append(waiting.pop(0))
                count += len(batch[-1][1])
            if count:
                images = torch.from_numpy(np.concatenate([crops for _, crops in batch])).to(device)
                with torch.inference_mode(), autocast:
                    out = model(images)
                out["pred_vertices"].float().cpu()  # wait for the result, as the detector does
            finished = time.monotonic()
            if finished >= measure_from:
                trial.frames += len(batch)
                trial.crops += count
                trial.forwards += 1
                trial.latencies_ms += [(finished - p.captured) * 1000 for p, _ in batch]
    finally:
        stop.set()
        for q in work:
            q.put(None)
        for thread in (*feeds, *boxers):
            thread.join(10)
    trial.memory_bytes = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                          else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return trial


def measure(streams=STREAMS, precisions=PRECISIONS, seconds: float = 20.0, warm_up_s: float = 5.0,
            crops_per_forward: int = 32, box_threads: int | None = None, boxes: str = "auto",
            device: str | None = None, config: Hmr2Config | None = None) -> tuple[list[Trial], dict]:
    """Every (precision, S) trial; and what ran them (device, model size, box source)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = config or (Hmr2Config() if device.type == "cuda" else TINY)
    model = random_hmr2(config, device)
    threads = box_threads or max(1, min(max(streams), 8))
    sources = [box_source(boxes, device) for _ in range(threads)]
    _, _, first = next(iter(open_source(str(VIDEO))))
    for source in sources:  # models load on their first frame: not in any trial
        source([FrameImage("warm-up", 0, 0.0, first)])
    try:
        trials = [run_trial(model, device, sources, s, precision, seconds, crops_per_forward, warm_up_s)
                  for precision in precisions for s in streams]
    finally:
        for source in sources:
            source.close()
    setup = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})",
             "model": "full-size ViT-H" if config == Hmr2Config() else f"tiny ({config})",
             "boxes": type(sources[0]).__name__, "box_threads": threads, "crops_per_forward": crops_per_forward}
    return trials, setup


def report(trials: list[Trial], setup: dict) -> str:
    rows = []
    for t in trials:
        p50, p95 = percentiles(t.latencies_ms, 50, 95) if t.latencies_ms else (float("nan"),) * 2
        rows.append([t.streams, t.precision, f"{t.per_stream_fps:.1f}", "yes" if t.per_stream_fps >= 0.95 * STREAM_FPS
                     else "no", f"{t.crops / t.seconds:.1f}", f"{t.crops / max(t.forwards, 1):.1f}",
                     f"{t.memory_bytes / 2**30:.2f}", f"{p50:.0f}", f"{p95:.0f}"])
    memory = "peak RSS of the process (a CPU run)" if setup["device"].startswith("CPU") else "peak GPU memory (torch)"
    return "\n\n".join([
        "## HMR 2.0 on S live streams (`python -m bench gpu`)",
        f"{datetime.date.today().isoformat()}, {setup['device']}, torch {torch.__version__}; HMR 2.0 {setup['model']} "
        f"with random weights; S copies of vid.mp4 decoded and paced at {STREAM_FPS:.0f} fps each; boxes: "
        f"{setup['boxes']} on {setup['box_threads']} threads; crops of all streams batched, up to "
        f"{setup['crops_per_forward']} a forward. Latency: camera capture time to HMR 2.0 output. "
        f"Memory column: {memory}.",
        table(["S", "precision", "fps per stream", "keeps up", "crops/s", "crops/forward", "memory GiB",
               "p50 ms", "p95 ms"], rows),
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default=",".join(map(str, STREAMS)), help="S values, comma-separated")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--seconds", type=float, help="measured seconds per trial (default 20 on a GPU, 3 on a CPU)")
    parser.add_argument("--warm-up", type=float, default=5.0, metavar="S", help="seconds before measuring")
    parser.add_argument("--crops-per-forward", type=int, default=32)
    parser.add_argument("--box-threads", type=int)
    parser.add_argument("--boxes", default="auto", help="box source: auto, blazepose, fasterrcnn")
    parser.add_argument("--device", help="default: cuda when there is one, else cpu (tiny model)")
    args = parser.parse_args(argv)
    on_gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    streams = tuple(int(s) for s in args.streams.split(","))
    if not on_gpu and args.streams == parser.get_default("streams"):
        streams = (1, 2)  # a CPU proves the bench runs; S = 16 of it would say nothing
    trials, setup = measure(streams, tuple(args.precisions.split(",")), args.seconds or (20.0 if on_gpu else 3.0),
                            args.warm_up if on_gpu else min(args.warm_up, 1.0), args.crops_per_forward,
                            args.box_threads, args.boxes, args.device)
    print(report(trials, setup))


if __name__ == "__main__":
    main()
