"""A person on every frame of the result files: the frames before anybody is first published hold the first
one published (the primary subject, listed first), flagged.

The live stream cannot know the future: its frames before the rider is first seen (and confirmed) are
empty. A file written after the job can, and the app's viewer needs a person on every frame
(``shared/notes/client.md`` §3). The held copy is what the tracker does for the primary subject on the
frames it can still change: the values of the first frame that has it, state ``held``,
``frames_since_seen`` counting to that frame's observation, and the confidence decayed
``CONFIDENCE_DECAY`` per frame away from it; ``backfilled: true`` says that the live stream had
nobody there. The Node client's ``jobDocument`` does the same (a test holds them equal).
"""
from __future__ import annotations

from tracking.tracker import Tracker

CONFIDENCE_DECAY = Tracker.confidence_decay


def first_with_person(frames: list[dict]) -> int | None:
    """Position in ``frames`` of the first frame with anybody; None when nobody is ever published."""
    return next((position for position, frame in enumerate(frames) if frame["people"]), None)


def hold_first_person(frames: list[dict]) -> list[dict]:
    """``frames`` (a job's ``frame`` messages in order) with every frame before the first that has anybody
    holding that frame's first person; the messages given are not changed."""
    first = first_with_person(frames)
    if not first:  # nobody at all, or somebody from the first frame on
        return frames
    person = frames[first]["people"][0]
    held, confidence = [], person["confidence"]
    for position in range(first - 1, -1, -1):
        confidence *= CONFIDENCE_DECAY  # one multiplication a frame: the same float in Python and JavaScript
        copy = {key: value for key, value in person.items() if key != "raw"}  # raw: observed frames only
        copy.update(state="held", confidence=confidence, backfilled=True,
                    frames_since_seen=person["frames_since_seen"] + first - position)
        held.append({**frames[position], "people": [copy]})
    return held[::-1] + frames[first:]
