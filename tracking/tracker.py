"""The tracker: detections in, one record per frame out, every live track in it.

``Tracker.push(frame)`` associates the frame's detections with the tracks,
then returns the frames that are now final; ``finish()`` returns the rest.
Every pushed frame comes out exactly once, in order, at most ``lookahead``
pushes after it went in (``lookahead=0``: strictly causal).

Association: tracks' expected detections at this frame (motion model) against
the detections, cost from ``distance`` (``distances.CombinedDistance``; its
location term widens with the frames a track has been unseen), one Hungarian
pass over all live tracks, pairs costlier than ``max_cost`` left unmatched.
Then a second chance by overlap (ByteTrack's second association): the tracks
and detections left over are matched by box IoU ≥ ``rematch_iou`` with the
tracks' expected boxes. A box that covers a track's expected box that well is
that person even when the cost says otherwise: pose-derived boxes jump in width
when a limb moves or the detector restarts (BlazePose after a gap), which moves
the box centre and depth enough to fail the cost on a single person.
Then a third chance for people lost for a while (``tracking.reidentify``): a
leftover detection that is the only one within a lost track's reach (which grows
with the time unseen and the track's speed), of its size and appearance, while no
other lost track could claim it, continues that track. A tentative track whose
first detection passes the same gate for exactly one lost track, with no other
new track that could, continues the lost track when it confirms (inside the
look-ahead window): its detections take the lost track's id (``reidentified``)
and the frames between are interpolated.

Life cycle (changes in ``tracker.changes``, published as ``track_event`` messages): a new
detection starts a tentative track (``born``); ``n_init`` consecutive hits confirm it (``confirmed``), a miss
before that ends it. A confirmed track missed is ``lost``, matched again
``reidentified``, and ``ended`` after ``max_age`` missed frames. Only confirmed
tracks are published; because confirmation happens inside the look-ahead
window, a track's first frames are back-filled when ``lookahead ≥ n_init − 1``.
With a smaller look-ahead the frames before confirmation are already out and
the track appears from the frame ``lookahead`` frames before it confirmed.

States of a published person:
- ``observed``: detected in this frame;
- ``interpolated``: missed, but detected again within the look-ahead window:
  lerp / slerp between the two observations around it;
- ``predicted``: missed with no later detection in the window: the motion
  model's extrapolation;
- ``held``: only for the primary subject, on frames before its first or after
  its last observation: the first observation / the last published values.
``confidence`` = score of the nearest observation × ``confidence_decay`` ^ frames to it.
A lost track's predicted or held values are not published where a track born
after it was last seen is seen in the same place (box IoU ≥ ``ghost_iou``): that
is the same person, and the seen one takes the ghost's place, first if it was the
primary subject.

Primary subject (``subjects=1``): the confirmed live track with the largest sum
of box area over its observations (big and long-seen: the filmed rider, not a
passer-by). A challenger replaces it only when its sum exceeds
``primary_margin`` × the primary's, so it does not flip between two similar
people, and then also on the frames of the window (so a rider confirmed just
after a passer-by is first from its first frame); an ended primary is replaced
by the best live track from the frame it ended. The primary is first in
``people`` on every frame emitted once one is designated, ``held`` on frames
before its first / after its last observation. Frames emitted before any
track is confirmed cannot change and may be empty (with ``lookahead ≥ n_init − 1``
only frames before anyone is seen are).

Smoothing: each published track goes through its own One Euro filter
(``smoothing.OneEuroFilter``), all of a frame's tracks in one step
(``smoothing.smooth_together``); ``TrackedPerson.raw`` keeps the observed,
unsmoothed detection (None on filled frames).
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from pose.detection import Detection, FrameDetections
from tracking.distances import CombinedDistance, DistanceFunction, appearance_distance
from tracking.fields import RECALLED_FIELDS, Fields, blend, from_fields, to_fields
from tracking.iou import iou_matrix
from tracking.motion import MotionMatching, MotionModel
from tracking.reidentify import ReidGate, reach, speed, unique_pairs, within_reach
from tracking.smoothing import OneEuro, OneEuroFilter, smooth_together
from tracking.types import TrackChange, TrackedFrame, TrackedPerson

# Association predicts only where the box will be: extrapolating per-joint poses or noisy
# depths over a gap adds noise (measured on bench.scenes); pose and depth come from the last observation.
_ASSOCIATION_FIELDS = ("bbox",)
_RECALLED = frozenset(RECALLED_FIELDS)
_APPEARANCE_MEMORY = 0.9  # weight of the past in a track's running appearance
_DEFAULT_FRAME_S = 1 / 30  # dt for smoothing when timestamps do not advance


@dataclass
class _Observation:
    index: int
    detection: Detection | None  # None once recalled()
    fields: Fields

    location: Fields = field(init=False)  # the fields association predicts (_ASSOCIATION_FIELDS)

    def __post_init__(self):
        # Computed once, a plain attribute: association reads it for every track on every frame.
        self.location = {k: self.fields[k] for k in _ASSOCIATION_FIELDS if k in self.fields}

    def recalled(self) -> _Observation:
        """What a track keeps once the observation is older than its working window (``RECALLED_FIELDS``)."""
        return _Observation(self.index, None, {k: self.fields[k] for k in RECALLED_FIELDS if k in self.fields})


@dataclass
class _Track:
    track_id: int
    first: _Observation
    observations: deque  # _Observation, oldest first; the older ones recalled (see Tracker._observe)
    confirmed: bool = False
    hits: int = 1
    lost: bool = False
    ended_at: int | None = None  # first frame index it is no longer live
    appearance: np.ndarray | None = None
    area_seen: float = 0.0  # Σ box area over observations: the primary-subject score
    smoother: OneEuroFilter | None = None
    last_published: tuple[float, Detection] | None = None  # (pts_ms, detection)

    @property
    def last(self) -> _Observation:
        return self.observations[-1]

    def latest(self, count: int) -> list[_Observation]:
        """The last ``count`` observations, oldest first; indexed from the end, not walked from the start."""
        return [self.observations[i] for i in range(-min(count, len(self.observations)), 0)]

    def observation_around(self, index: int) -> tuple[_Observation | None, _Observation | None, _Observation | None]:
        """(at, None, None) when an observation is at ``index``, else (None, before, after) it.

        Searched from the latest: ``index`` is an unpublished frame, so at most the
        look-ahead window's observations come after it, and all three are full ones.
        """
        after = None
        for observation in reversed(self.observations):
            if observation.index == index:
                return observation, None, after
            if observation.index < index:
                return None, observation, after
            after = observation
        return None, None, after


@dataclass
class _Filled:
    """A track's values on one frame, before smoothing."""

    state: str
    fields: Fields
    nearest: _Observation  # the observation values and score come from
    frames_since_seen: int  # since the last observation (until the first, for held-before)
    raw: Detection | None = None  # the detection itself when observed


@dataclass
class _PendingFrame:
    index: int
    pts_ms: float
    meta: dict


@dataclass
class Tracker:
    lookahead: int = 8  # frames held back to interpolate gaps and back-fill confirmation
    n_init: int = 3  # consecutive hits that confirm a track
    max_age: int = 30  # missed frames after which a confirmed track ends
    subjects: int = 0  # 1: designate and always publish a primary subject first
    smoothing: bool = True
    distance: DistanceFunction = field(default_factory=CombinedDistance)
    motion: MotionModel = field(default_factory=MotionMatching)
    max_cost: float = 1.5
    rematch_iou: float = 0.5  # leftover track/detection pairs overlapping this much are matched anyway
    # When a lost person's return is unmistakable (tracking.reidentify); None: association's cost alone.
    reid: ReidGate | None = field(default_factory=ReidGate)
    ghost_iou: float = 0.3  # a lost track's fill this close to a newer seen track is that person (_ghosts)
    confidence_decay: float = 0.9
    primary_margin: float = 1.5
    min_score: float = 0.0  # detections below this are ignored
    smoothing_params: dict[str, OneEuro] | None = None
    changes: list[TrackChange] = field(default_factory=list)

    def __post_init__(self):
        if self.subjects not in (0, 1):
            raise ValueError("subjects must be 0 (no primary) or 1")
        self._tracks: dict[int, _Track] = {}
        self._pending: deque[_PendingFrame] = deque()
        self._next_id = 1
        # Primary subject per frame: [(first frame index, track id)], oldest first.
        self._primaries: list[tuple[float, int]] = []
        self._last_index: int | None = None

    # --- public ---------------------------------------------------------------

    def push(self, frame: FrameDetections) -> list[TrackedFrame]:
        """Take one frame's detections; return the frames now final (oldest first)."""
        detections = [d for d in frame.people if d.score >= self.min_score]
        self._age_tracks(frame.index, self._associate(frame.index, detections))
        self._update_primary(frame.index)
        self._pending.append(_PendingFrame(frame.index, frame.pts_ms, frame.meta))
        self._last_index = frame.index
        emitted = []
        while len(self._pending) > self.lookahead:
            emitted.append(self._emit(self._pending.popleft()))
        self._forget_finished()
        return emitted

    def finish(self) -> list[TrackedFrame]:
        """End of the job: the frames still held back, then every track ends."""
        emitted = [self._emit(pending) for pending in self._pending]
        self._pending.clear()
        for track in self._tracks.values():
            if track.ended_at is None:
                self._end(track, self._last_index + 1)
        self._tracks.clear()
        self._primaries.clear()
        return emitted

    def reset(self) -> list[TrackedFrame]:
        """A scene cut: same as ``finish()``; nothing is associated across it. Track ids keep counting."""
        return self.finish()

    # --- association and life cycle ------------------------------------------------

    def _live(self) -> list[_Track]:
        return [t for t in self._tracks.values() if t.ended_at is None]

    def _expected(self, track: _Track, index: int) -> Detection:
        """What the track should look like at ``index``: predicted location, last pose, running appearance."""
        history = [(o.index, o.location) for o in track.latest(self.motion.history)]
        expected = from_fields(track.last.detection, self.motion.predict(history, index))
        if track.appearance is not None:
            expected.extras["appearance"] = track.appearance
        return expected

    def _associate(self, index: int, detections: list[Detection]) -> set[int]:
        """Match detections to live tracks, start tracks for the rest; returns the matched track ids."""
        tracks = self._live()
        matched: dict[int, int] = {}  # detection row -> track id
        if tracks and detections:
            frames_since_seen = np.array([index - t.last.index for t in tracks])
            expected = [self._expected(t, index) for t in tracks]
            cost = np.asarray(self.distance(expected, detections, frames_since_seen))
            cost = np.where(np.isnan(cost), np.inf, cost)
            rows, cols = linear_sum_assignment(np.minimum(cost, 1e9))
            matched = {c: tracks[r].track_id for r, c in zip(rows, cols) if cost[r, c] <= self.max_cost}
            matched |= self._rematch_by_overlap(tracks, expected, detections, matched)
            matched |= self._reidentify(tracks, expected, detections, frames_since_seen, matched)
        refound = [self._tracks[track_id] for track_id in matched.values() if self._tracks[track_id].lost]
        for row, detection in enumerate(detections):
            if row in matched:
                self._observe(self._tracks[matched[row]], index, detection)
            else:
                self._start(index, detection)
        self._absorb_stand_ins(refound, index, set(matched.values()))
        return set(matched.values())

    def _rematch_by_overlap(self, tracks: list[_Track], expected: list[Detection], detections: list[Detection],
                            matched: dict[int, int]) -> dict[int, int]:
        """{detection row: track id} for leftover pairs whose boxes overlap by IoU ≥ ``rematch_iou``."""
        taken = set(matched.values())
        track_rows = [r for r, t in enumerate(tracks) if t.track_id not in taken]
        detection_rows = [c for c in range(len(detections)) if c not in matched]
        if not track_rows or not detection_rows:
            return {}
        overlap = iou_matrix(np.array([expected[r].bbox for r in track_rows], dtype=np.float64),
                             np.array([detections[c].bbox for c in detection_rows], dtype=np.float64))
        rows, cols = linear_sum_assignment(-overlap)
        return {detection_rows[c]: tracks[track_rows[r]].track_id
                for r, c in zip(rows, cols) if overlap[r, c] >= self.rematch_iou}

    def _reidentify(self, tracks: list[_Track], expected: list[Detection], detections: list[Detection],
                    frames_since_seen: np.ndarray, matched: dict[int, int]) -> dict[int, int]:
        """{detection row: track id} for leftover confirmed tracks and detections that pass the
        re-identification gate (``tracking.reidentify``) as unique pairs."""
        taken = set(matched.values())
        if self.reid is None:
            return {}
        track_rows = [r for r, t in enumerate(tracks) if t.confirmed and t.track_id not in taken]
        detection_rows = [c for c in range(len(detections)) if c not in matched]
        if not track_rows or not detection_rows:
            return {}
        candidates = self._reid_candidates([tracks[r] for r in track_rows], [expected[r] for r in track_rows],
                                           frames_since_seen[track_rows], [detections[c] for c in detection_rows])
        return {detection_rows[c]: tracks[track_rows[r]].track_id for r, c in unique_pairs(candidates)}

    def _reid_candidates(self, tracks: list[_Track], expected: list[Detection], frames_unseen: np.ndarray,
                         detections: list[Detection], in_place_counts: bool = False) -> np.ndarray:
        """(T, D) bool: each detection within each lost track's reach, of its size and appearance (or, with
        ``in_place_counts``, where the track was expected: box IoU ≥ ``ghost_iou``)."""
        # Only with appearance on both sides: location and size alone cannot tell a returning person
        # from a false detection in a crowd or clutter (bench.scenes without appearance: 4x the ID switches).
        # Checked first: it runs for every track missed in a frame, and without appearance nothing else need.
        described = np.outer([e.extras.get("appearance") is not None for e in expected],
                             [d.extras.get("appearance") is not None for d in detections])
        if not described.any():
            return described
        recent = [t.latest(self.motion.history) for t in tracks]
        speeds = np.array([speed(np.array([o.fields["bbox"] for o in r]), np.array([o.index for o in r]))
                           for r in recent])
        candidates = within_reach(np.array([e.bbox for e in expected], dtype=np.float64),
                                  np.array([t.last.fields["bbox"] for t in tracks], dtype=np.float64),
                                  reach(speeds, frames_unseen, self.reid),
                                  np.array([d.bbox for d in detections], dtype=np.float64), self.reid)
        unlike = appearance_distance(expected, detections, frames_unseen)
        evidence = unlike <= self.reid.max_appearance
        if in_place_counts:
            # Where the track was expected is the person whose ghost would stand there (_ghosts), unless they
            # look unlike it: a pose box that grows as a rider lands shifts the torso colours appearance is
            # taken from (treeline-jump: 0.42 between the rider's own boxes; two people ~1).
            in_place = iou_matrix(np.array([e.bbox for e in expected], dtype=np.float64),
                                  np.array([d.bbox for d in detections], dtype=np.float64)) >= self.ghost_iou
            evidence |= in_place & (unlike <= 2 * self.reid.max_appearance)
        return candidates & described & evidence

    def _start(self, index: int, detection: Detection) -> None:
        first = _Observation(index, detection, to_fields(detection))
        track = _Track(self._next_id, first, deque([first], maxlen=self._working_window + self.motion.recall))
        self._next_id += 1
        self._tracks[track.track_id] = track
        self._remember(track, detection)
        self.changes.append(TrackChange("born", track.track_id, index))
        if self.n_init <= 1:
            self._confirm(track, index)

    @property
    def _working_window(self) -> int:
        """Observations a track keeps whole: the look-ahead window's, the one before it, the motion model's history."""
        return self.lookahead + self.motion.history + 1

    def _append(self, track: _Track, observation: _Observation) -> None:
        observations = track.observations
        observations.append(observation)
        leaving = -self._working_window - 1  # the observation that just left the working window
        if len(observations) >= -leaving and not observations[leaving].fields.keys() <= _RECALLED:
            observations[leaving] = observations[leaving].recalled()  # a mesh and SMPL parameters: ~250 KB

    def _observe(self, track: _Track, index: int, detection: Detection) -> None:
        self._append(track, _Observation(index, detection, to_fields(detection)))
        track.hits += 1
        self._remember(track, detection)
        if track.lost:
            track.lost = False
            self.changes.append(TrackChange("reidentified", track.track_id, index))
        if not track.confirmed and track.hits >= self.n_init:
            self._confirm(track, index)

    def _remember(self, track: _Track, detection: Detection) -> None:
        """Update the running appearance and the primary-subject score."""
        track.area_seen += float(detection.bbox[2] * detection.bbox[3])
        appearance = detection.extras.get("appearance")
        if appearance is not None:
            appearance = np.asarray(appearance, dtype=np.float32)
            track.appearance = appearance if track.appearance is None else (
                _APPEARANCE_MEMORY * track.appearance + (1 - _APPEARANCE_MEMORY) * appearance)

    def _confirm(self, track: _Track, index: int) -> None:
        """A tentative track has its ``n_init`` hits: a new person, or a lost one who came back
        where association did not look (then it continues the lost track, see ``_continued``)."""
        lost = self._continued(track)
        if lost is not None:
            self._merge(track, into=lost, index=index)
            return
        track.confirmed = True
        self.changes.append(TrackChange("confirmed", track.track_id, index))

    def _continued(self, new: _Track) -> _Track | None:
        """The one lost track that ``new`` continues, judged at new's first observation; None when
        there is none or more than one (``tracking.reidentify``).

        Decided at confirmation, inside the look-ahead window, so that the frames published
        afterwards show one person under the lost track's id, interpolated across the gap.
        """
        born = new.first.index
        lost = [t for t in self._live() if t.confirmed and t.lost and t.last.index < born]
        if not lost or self.reid is None:
            return None
        candidates = self._continues(lost, [new])[:, 0]
        if candidates.sum() != 1:
            return None
        chosen = lost[int(np.argmax(candidates))]
        # Unique the other way too: no other track born since then could be that person.
        rivals = [t for t in self._live() if t is not new and t.first.index > chosen.last.index]
        return chosen if not rivals or not self._continues([chosen], rivals).any() else None

    def _continues(self, lost: list[_Track], new: list[_Track]) -> np.ndarray:
        """(L, N) bool: the first observation of each new track passes each lost track's gate."""
        firsts = []
        for track in new:
            first = from_fields(track.first.detection, track.first.fields)
            if track.appearance is not None:
                first.extras["appearance"] = track.appearance
            firsts.append(first)
        return np.column_stack([
            self._reid_candidates(lost, [self._expected(t, track.first.index) for t in lost],
                                  np.array([track.first.index - t.last.index for t in lost]), [first])[:, 0]
            for track, first in zip(new, firsts)])

    def _merge(self, new: _Track, into: _Track, index: int) -> None:
        """``new``'s observations continue the lost ``into``; ``new`` (never published) ends here."""
        self._absorb(new, into, index)
        into.lost = False
        self.changes.append(TrackChange("reidentified", into.track_id, new.first.index))

    def _absorb_stand_ins(self, refound: list[_Track], index: int, matched: set[int]) -> None:
        """Lost tracks found again this frame: a younger track that stood in for one during its gap (born after
        it was last seen, not seen since, last expected where it is found again: ``_continues``' gate, being in
        place counts) was that person. Its observations fill the gap, relabelled while still in the window."""
        for track in refound if self.reid is not None else ():
            before = track.observations[-2].index  # the observation before the gap; the last is this frame's
            stand_ins = [t for t in self._live() if t is not track and t.track_id not in matched
                         and t.first.index > before and t.last.index < index]
            if not stand_ins:
                continue
            found = track.observations[-1]
            candidates = self._reid_candidates(stand_ins, [self._expected(t, index) for t in stand_ins],
                                               np.array([index - t.last.index for t in stand_ins]),
                                               [from_fields(found.detection, found.fields)], in_place_counts=True)[:, 0]
            if candidates.sum() == 1:
                self._absorb(stand_ins[int(np.argmax(candidates))], track, index)

    def _absorb(self, source: _Track, into: _Track, index: int) -> None:
        """``source``'s observations become ``into``'s (in frame order); ``source`` ends here."""
        observations = sorted([*into.observations, *source.observations], key=lambda o: o.index)
        whole = len(observations) - self._working_window  # those before it keep only what motion recalls
        into.observations = deque((o.recalled() if i < whole and not o.fields.keys() <= _RECALLED else o
                                   for i, o in enumerate(observations)), maxlen=into.observations.maxlen)
        into.hits += source.hits
        into.area_seen += source.area_seen
        if source.appearance is not None:
            into.appearance = source.appearance if into.appearance is None else (
                _APPEARANCE_MEMORY * into.appearance + (1 - _APPEARANCE_MEMORY) * source.appearance)
        self._end(source, index)
        del self._tracks[source.track_id]

    def _age_tracks(self, index: int, matched: set[int]) -> None:
        """Tracks missed in this frame: tentative ones end, confirmed ones are lost, then end after max_age."""
        for track in self._live():
            if track.track_id in matched or track.last.index == index:
                continue
            if not track.confirmed or index - track.last.index > self.max_age:
                self._end(track, index)
            elif not track.lost:
                track.lost = True
                self.changes.append(TrackChange("lost", track.track_id, index))

    def _end(self, track: _Track, index: int) -> None:
        track.ended_at = index
        self.changes.append(TrackChange("ended", track.track_id, index))

    def _update_primary(self, index: int) -> None:
        """Designate the primary subject; see the module docstring for the rule.

        The first designation covers every frame still in the window. A challenger that
        overtakes the primary takes over the primary's whole span in the window (it is
        the better choice for those frames too); when the primary ends, its successor
        starts at this frame, so the frames where the old one was live keep it.
        """
        if not self.subjects:
            return
        candidates = [t for t in self._live() if t.confirmed]
        if not candidates:
            return
        best = max(candidates, key=lambda t: t.area_seen)
        if not self._primaries:
            self._primaries.append((-np.inf, best.track_id))
            return
        start, current_id = self._primaries[-1]
        current = self._tracks[current_id]
        if current.ended_at is not None:
            self._primaries.append((index, best.track_id))
        elif best.area_seen > self.primary_margin * current.area_seen:
            self._primaries[-1] = (start, best.track_id)

    def _primary_at(self, index: int) -> _Track | None:
        starts = [start for start, _ in self._primaries]
        position = bisect_left(starts, index + 0.5) - 1  # the last span starting at or before index
        return self._tracks[self._primaries[position][1]] if position >= 0 else None

    def _forget_finished(self) -> None:
        """Drop tracks with nothing left to publish: ended before the oldest unpublished frame, or never confirmed."""
        oldest = self._pending[0].index if self._pending else self._last_index + 1
        while len(self._primaries) > 1 and self._primaries[1][0] <= oldest:
            self._primaries.pop(0)
        primaries = {track_id for _, track_id in self._primaries}
        for track_id in [i for i, t in self._tracks.items()
                         if t.ended_at is not None and (t.ended_at <= oldest or not t.confirmed)
                         and i not in primaries]:
            del self._tracks[track_id]

    # --- emission -------------------------------------------------------------------

    def _emit(self, pending: _PendingFrame) -> TrackedFrame:
        index = pending.index
        shown = [(track, self._fill(track, index)) for track in self._tracks.values() if track.confirmed
                 and track.first.index <= index and (track.ended_at is None or index < track.ended_at)]
        first = primary = self._primary_at(index)
        if primary is not None and all(track is not primary for track, _ in shown):
            shown.append((primary, self._hold(primary, index)))
        for ghost, seen in self._ghosts(shown):
            shown = [pair for pair in shown if pair[0] is not ghost]
            first = seen if ghost is first else first
        shown.sort(key=lambda pair: pair[0] is not first)
        return TrackedFrame(index, pending.pts_ms, self._publish(shown, pending), pending.meta)

    def _ghosts(self, shown: list[tuple[_Track, _Filled]]) -> list[tuple[_Track, _Track]]:
        """(ghost, seen) pairs: a track predicted or held on this frame where a track born after it was
        last observed is seen, in the same place (box IoU ≥ ``ghost_iou``): the same person, whom
        re-identification did not join; only the seen one is published."""
        ghosts = [(t, f) for t, f in shown if f.state in ("predicted", "held")]
        seen = [(t, f) for t, f in shown if f.state in ("observed", "interpolated")]
        if not ghosts or not seen:
            return []
        overlap = iou_matrix(np.array([f.fields["bbox"] for _, f in ghosts], dtype=np.float64),
                             np.array([f.fields["bbox"] for _, f in seen], dtype=np.float64))
        pairs = []
        for g, (ghost, _) in enumerate(ghosts):
            later = [s for s, (track, _) in enumerate(seen)
                     if track.first.index > ghost.last.index and overlap[g, s] >= self.ghost_iou]
            if later:
                pairs.append((ghost, seen[max(later, key=lambda s: overlap[g, s])][0]))
        return pairs

    def _fill(self, track: _Track, index: int) -> _Filled:
        """A live track's values at ``index``: observed, interpolated or predicted."""
        at, before, after = track.observation_around(index)
        if at is not None:
            return _Filled("observed", at.fields, at, 0, at.detection)
        if after is not None:
            weight = (index - before.index) / (after.index - before.index)
            nearest = before if weight <= 0.5 else after
            return _Filled("interpolated", blend(before.fields, after.fields, weight), nearest, index - before.index)
        observations = [(o.index, o.fields) for o in track.observations]
        return _Filled("predicted", self.motion.predict(observations, index), before, index - before.index)

    def _hold(self, track: _Track, index: int) -> _Filled:
        """The primary on a frame where it is not live: its first observation before, last published after."""
        if index < track.first.index or track.last_published is None:
            return _Filled("held", track.first.fields, track.first, track.first.index - index)
        last_detection = track.last_published[1]
        held = _Observation(track.last.index, last_detection, to_fields(last_detection))
        return _Filled("held", held.fields, held, index - track.last.index)

    def _publish(self, shown: list[tuple[_Track, _Filled]], pending: _PendingFrame) -> list[TrackedPerson]:
        """The people of one frame from their tracks' values there, all smoothed in one ``smooth_together`` call."""
        values = [filled.fields for _, filled in shown]
        if self.smoothing and shown:
            dts = []
            for track, _ in shown:
                if track.smoother is None:
                    track.smoother = OneEuroFilter(self.smoothing_params)
                previous_pts = track.last_published[0] if track.last_published else pending.pts_ms
                dt = (pending.pts_ms - previous_pts) / 1000.0
                dts.append(dt if dt > 0 else _DEFAULT_FRAME_S)
            values = smooth_together([track.smoother for track, _ in shown], values, dts)
        people = []
        for (track, filled), fields in zip(shown, values):
            raw = filled.raw
            unsmoothed = raw is not None and not self.smoothing
            detection = raw if unsmoothed else from_fields(filled.nearest.detection, fields)
            track.last_published = (pending.pts_ms, detection)
            frames_to_nearest = abs(pending.index - filled.nearest.index)
            confidence = float(filled.nearest.detection.score) * self.confidence_decay ** frames_to_nearest
            people.append(TrackedPerson(track.track_id, filled.state, confidence, filled.frames_since_seen,
                                        detection, raw))
        return people
