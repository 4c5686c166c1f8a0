"""What a tracker publishes: every frame, with every live track's state."""
from __future__ import annotations

from dataclasses import dataclass, field

from pose.detection import Detection


@dataclass
class TrackedPerson:
    track_id: int
    state: str  # observed | predicted | interpolated | held
    confidence: float
    frames_since_seen: int  # 0 when observed in this frame
    detection: Detection  # the values to publish (observed, or filled in)
    raw: Detection | None = None  # the unsmoothed observation, when observed


@dataclass
class TrackedFrame:
    index: int
    pts_ms: float
    people: list[TrackedPerson] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # its FrameDetections' meta


@dataclass
class TrackChange:
    kind: str  # born | confirmed | lost | reidentified | ended
    track_id: int
    index: int  # frame index at which it happened
