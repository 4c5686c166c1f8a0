"""The pipeline's option tables: decode, track (with the tracker's own), outputs; and the detector choice.

Each detector declares its own options in its module (``detectors.register``); the
launcher takes every option here whose ``takers`` name it and hands each stage its own.
"""
from __future__ import annotations

from pathlib import Path

from bus.schema import Between, Enum
from options import LAUNCH, Option, Table, positive_int

TRACKERS = ("phalp", "iou")

DETECTOR = Option("--detector", "which detector the workers run (default %(default)s)", default="blazepose",
                  takers=(LAUNCH, "detect"), job=str)  # its choices: the registered detectors (detectors.table)
# Shared by the detectors that find people with BlazePose (BlazePose, HMR 2.0's BlazePose boxes): detectors.second_look.
SECOND_LOOK = Option("--no-second-look", "keep every pose BlazePose finds, and no second looks (by default poses "
                                         "that are no plausible person are dropped; where the followed person is "
                                         "missed, a crop around where they are expected is looked at again, turned "
                                         "for inverted bodies; where nobody is found, tiles are searched)",
                     bool, True, dest="second_look", job=bool)
# Shared by every detector that places people in 3D: the full-image focal (pose.camera.image_focal).
FOV = Option("--fov", "the camera's field of view in degrees across the frame's longer side, for the focal length "
                      "of camera.translation and keypoints_3d (default: HMR 2.0's 5000/256 x the longer side, "
                      "about 2.9 degrees)", float, metavar="DEG", job=Between(float, 1.0, 179.0))
# HMR 2.0's arithmetic (detectors.hmr2.precision); here because a job may ask for it, as for the ones above.
PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISION = Option("--precision", "HMR 2.0 arithmetic: fp32, bf16, int8 (CPU only), auto: int8 on a CPU, bf16 on "
                                  "CUDA (error bounds: docs/hmr2.md); default %(default)s",
                   default="auto", choices=PRECISIONS, job=Enum(PRECISIONS))
# The detect options a job may name: a worker serves every job with what it loaded, so a job asking for another
# value than the running workers' is refused (launcher.pipeline.Pipeline.refusal).
DETECT = Table("detect", (DETECTOR, FOV, PRECISION, SECOND_LOOK))

# Which part of the source a job takes (video.sources.trimmed's keywords); part of the decode group.
TRIM = Table("trim", (
    Option("--start", "decode from S seconds into the source (the frames before are skipped; results are "
                      "numbered from 0 and keep the source's pts_ms)", float, takers=(LAUNCH, "decode"),
           metavar="S", job=Between(float, 0.0, 1e7)),
    Option("--end", "stop decoding at S seconds into the source", float, takers=(LAUNCH, "decode"), metavar="S",
           job=Between(float, 0.0, 1e7)),
    Option("--max-frames", "decode at most N frames", positive_int, takers=(LAUNCH, "decode"), metavar="N",
           job=Between(int, 1, 10**9)),
))

DECODE = Table("decode", (
    # 3840: 8K frames would be 100 MB each on the bus (and ×32 held by decode for resending), while the
    # detectors look at ≤ 256-px crops anyway.
    Option("--max-side", "downscale frames whose longer side exceeds PX before detection (INTER_AREA, aspect "
                         "kept); results stay in the source's pixels (default %(default)s)",
           int, 3840, (LAUNCH, "decode"), metavar="PX", job=Between(int, 16, 8192)),  # the image message's limit
    Option("--jpeg", "send frames as JPEG of this quality instead of raw pixels (for workers on other hosts)",
           int, takers=(LAUNCH, "decode"), metavar="QUALITY"),
    Option("--realtime", "decode at the source's frame rate, like a camera (such a job, like a camera or a stream, "
                         "is served ahead of file jobs when the workers are short)", bool, False, (LAUNCH, "decode"),
           job=bool),
    Option("--max-jobs", "jobs decoded at once, each on a lane of its own; more wait in submission order "
                         "(default %(default)s)", positive_int, 4, (LAUNCH, "decode"), metavar="N"),
    Option("--fps", "frame rate for image folders and streams", float, takers=("decode",),
           job=Between(float, 0.01, 1000)),
    *TRIM.options,
))

# What each job's tracker is built with (tracking.tracker.Tracker's keywords).
TRACKER = Table("tracker", (
    Option("--lookahead", "frames held back to interpolate gaps (0: strictly causal; default %(default)s)",
           int, 8, (LAUNCH, "track"), metavar="K", job=Between(int, 0, 1000)),
    Option("--subjects", "1: keep a primary subject (the rider) first in every frame (default)", int, 1,
           (LAUNCH, "track"), choices=(0, 1), job=Enum((0, 1))),
    Option("--no-smoothing", "publish unsmoothed values", bool, True, (LAUNCH, "track"), dest="smoothing",
           job=bool),
    Option("--n-init", "hits that confirm a track (default %(default)s)", int, 3, (LAUNCH, "track"),
           job=Between(int, 1, 100)),
    Option("--max-age", "missed frames that end a track (default %(default)s)", int, 30, (LAUNCH, "track"),
           job=Between(int, 0, 100_000)),
))

TRACK = Table("track", (
    Option("--tracker", "phalp: PHALP-style tracker that fills every frame; iou: plain box matching", str,
           "phalp", (LAUNCH, "track"), choices=TRACKERS, job=Enum(TRACKERS)),
    Option("--stall-timeout", "end a job with an error when it makes no progress for S seconds "
                              "(default %(default)s)", float, 300.0, (LAUNCH, "track"), metavar="S"),
    Option("--wait-subscribers", "hold publishing until N subscriptions have arrived", int, 0, (LAUNCH, "track"),
           metavar="N"),
))

# The per-job files (--report, --overlay, ...) are outputs.FILES; outputs.table() is this and those.
OUTPUTS = Table("outputs", (
    Option("--out", "also write each job's results to DIR/<job>.jsonl", Path, takers=(LAUNCH, "track"),
           metavar="DIR"),
    Option("--job-log", "per-job results logs, for replay (default %(default)s)", Path,
           Path("~/.cache/posebus/jobs").expanduser(), (LAUNCH, "track"), metavar="DIR"),
    Option("--keep-jobs", "job logs kept (default %(default)s)", int, 50, (LAUNCH, "track"), metavar="N"),
    Option("--record", "save every bus stream of each job to DIR/<job>/ (replay a stage alone on it)", Path,
           takers=(LAUNCH, "decode", "track"), metavar="DIR"),
))
