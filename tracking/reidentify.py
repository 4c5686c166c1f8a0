"""Is this new detection (or new track) the person a lost track lost?

Association's cost trusts location: a detection far from where a track is expected
costs too much. After a full occlusion (a spray of snow, a whip-pan, a rider in the
air whom the detector missed) that is wrong in one particular way: the person moved
on while unseen, the detector restarted and reports a box of another size, and the
first detection afterwards is far from the prediction. Then nothing else explains it
better, and a new identity would be a second person where there is one.

The gate here is looser than association's cost, and made safe by uniqueness
instead of by distance: a lost track and a detection (or the first observation of a
new track) are the same person when
- the detection's box centre is within the track's *reach*: how far a person moving
  at the track's last speed could have gone in the frames unseen, plus a margin that
  grows with those frames (``reach``), measured from both the predicted and the last
  observed box (the prediction may overshoot a jump that ended);
- box heights differ by at most a factor ``max_size_ratio``;
- both carry appearance vectors, within ``max_appearance`` (cosine) of each other;
- and the pair is *unique*: the detection is the only candidate in the track's reach
  and the track the only lost one whose reach holds the detection (``unique_pairs``).
  In a crowd this gate stays shut and association's own cost decides.

Boxes are (4,) x, y, w, h px; distances are in body heights (box heights).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracking.arrays import norm


@dataclass(frozen=True)
class ReidGate:
    base_reach: float = 0.5  # body heights, whatever the time unseen
    reach_growth: float = 0.1  # body heights per frame unseen, on top of the track's own speed
    max_size_ratio: float = 1.8
    max_appearance: float = 0.35  # cosine distance


def centres(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) x, y, w, h -> (N, 2) box centres."""
    return boxes[:, :2] + boxes[:, 2:] / 2


def speed(boxes: np.ndarray, indices: np.ndarray) -> float:
    """Body heights per frame the box centre moved over a track's last observations.

    boxes (N, 4), indices (N,) frame indices, oldest first; 0 with fewer than two.
    """
    if len(boxes) < 2 or indices[-1] == indices[0]:
        return 0.0
    travelled = norm(centres(boxes[-1:]) - centres(boxes[:1]))[0]
    return float(travelled / max(boxes[-1, 3], 1.0) / (indices[-1] - indices[0]))


def reach(speeds: np.ndarray, frames_unseen: np.ndarray, gate: ReidGate) -> np.ndarray:
    """(T,) body heights each lost track's person may have gone: base + (speed + growth) · frames unseen."""
    return gate.base_reach + (speeds + gate.reach_growth) * frames_unseen


def within_reach(expected: np.ndarray, last_seen: np.ndarray, reaches: np.ndarray, boxes: np.ndarray,
                 gate: ReidGate) -> np.ndarray:
    """(T, D) bool: detection boxes (D, 4) in each track's reach and of a size it could have.

    expected (T, 4) the tracks' predicted boxes, last_seen (T, 4) their last observed ones.
    """
    heights = np.maximum(boxes[:, 3], 1.0)
    offsets = []
    for reference in (expected, last_seen):
        scale = np.sqrt(np.maximum(reference[:, 3], 1.0)[:, None] * heights[None, :])
        offsets.append(norm(centres(reference)[:, None] - centres(boxes)[None]) / scale)
    near = np.minimum(*offsets) <= reaches[:, None]
    size_ratio = np.abs(np.log(np.maximum(last_seen[:, 3], 1.0)[:, None] / heights[None, :]))
    return near & (size_ratio <= np.log(gate.max_size_ratio))


def unique_pairs(candidates: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) of each True in ``candidates`` (T, D) that is alone in its row and its column."""
    rows, columns = np.nonzero(candidates)
    row_counts, column_counts = candidates.sum(axis=1), candidates.sum(axis=0)
    return [(int(r), int(c)) for r, c in zip(rows, columns) if row_counts[r] == 1 and column_counts[c] == 1]
