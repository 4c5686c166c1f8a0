"""Figures about one job, computed from its public messages; no presentation here."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from bus.messages import STATES

NO_PERSON = "none"  # coverage category of a frame without anybody in it


@dataclass
class JobMessages:
    """One job's messages, split by type; frames sorted by index."""

    id: str
    start: dict | None  # absent when decode could not open the source
    frames: list[dict]
    end: dict | None  # absent when the run was cut short


def split_job(messages: list[dict]) -> JobMessages:
    """Sort one job's messages by type; raises ValueError for several jobs or none."""
    jobs = {m["job"] for m in messages}
    if len(jobs) != 1:
        raise ValueError(f"a report covers one job; got {len(jobs)} ({', '.join(sorted(jobs))})")
    by_type: dict[str, list[dict]] = {}
    for message in messages:
        by_type.setdefault(message["type"], []).append(message)
    frames = sorted(by_type.get("frame", []), key=lambda m: m["index"])
    return JobMessages(jobs.pop(), _last(by_type.get("job_start")), frames, _last(by_type.get("job_end")))


def _last(found: list[dict] | None) -> dict | None:
    return found[-1] if found else None


def primary_state(frame: dict) -> str:
    """State of the frame's primary subject: the tracker lists the rider first."""
    return frame["people"][0]["state"] if frame["people"] else NO_PERSON


def coverage(frames: list[dict]) -> dict[str, int]:
    """Frames per primary-subject state, every state listed (zeros included), in contract order."""
    counts = Counter(primary_state(f) for f in frames)
    return {state: counts[state] for state in (*STATES, NO_PERSON)}


def track_ids(frames: list[dict]) -> list[int]:
    """Every track id seen, in order of first appearance."""
    return list(dict.fromkeys(p["track_id"] for f in frames for p in f["people"]))


def stage_times(frames: list[dict], stage: str) -> np.ndarray:
    """Wall-clock seconds at which each frame passed ``stage``; NaN where not recorded."""
    return np.array([f.get("timestamps", {}).get(stage, np.nan) for f in frames], dtype=float)


def stage_rate(frames: list[dict], stage: str) -> float | None:
    """Frames per second through one stage, over the span between its first and last frame."""
    times = stage_times(frames, stage)
    times = times[~np.isnan(times)]
    span = times.max() - times.min() if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else None


def end_to_end_rate(frames: list[dict]) -> float | None:
    """Frames per second from the first frame decoded to the last one published."""
    decoded, published = stage_times(frames, "decoded"), stage_times(frames, "published")
    if np.isnan(decoded).all() or np.isnan(published).all():
        return None
    span = np.nanmax(published) - np.nanmin(decoded)
    return len(frames) / span if span > 0 else None


@dataclass
class Latency:
    """Seconds a frame spent between two stages."""

    p50: float
    p95: float
    max: float


def latency(frames: list[dict], since: str, until: str) -> Latency | None:
    """Per-frame delay from stage ``since`` to stage ``until``; None without timestamps."""
    delays = stage_times(frames, until) - stage_times(frames, since)
    delays = delays[~np.isnan(delays)]
    if not len(delays):
        return None
    return Latency(float(np.percentile(delays, 50)), float(np.percentile(delays, 95)), float(delays.max()))


@dataclass
class TrackSeries:
    """One track's values over every frame of the job, for plotting; gaps where it is absent."""

    track_id: int
    index: np.ndarray  # frame indices, all frames of the job
    states: list[str | None]  # None where the track is not in the frame
    angles: dict[str, np.ndarray]  # angle key -> degrees, NaN where not measured or absent


def track_series(frames: list[dict], track_id: int, angle_keys: list[str]) -> TrackSeries:
    found = [next((p for p in f["people"] if p["track_id"] == track_id), None) for f in frames]
    angles = {key: np.array([_degrees(p["joint_angles"].get(key)) if p else np.nan for p in found])
              for key in angle_keys}
    return TrackSeries(track_id, np.array([f["index"] for f in frames]), [p and p["state"] for p in found],
                       angles)


def _degrees(value: float | None) -> float:
    return np.nan if value is None else float(value)


def angle_keys(job: JobMessages) -> list[str]:
    """The job's angle keys: as announced in job_start, else as found in the frames."""
    if job.start and job.start.get("angles"):
        return list(job.start["angles"])
    return list(dict.fromkeys(k for f in job.frames for p in f["people"] for k in p["joint_angles"]))
