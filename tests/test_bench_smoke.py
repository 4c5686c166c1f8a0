"""The transport bench runs end to end on a few frames (no timing is checked)."""
import numpy as np
import pytest

pytest.importorskip("flask")

from bench import transport  # noqa: E402


def test_transport_bench_moves_frames_over_every_variant():
    image = np.random.default_rng(0).integers(0, 256, (1088, 1920, 3), dtype=np.uint8)
    hops, trials, quiet = transport.measure(rounds=1, frames=3, image=image, max_wait_s=None)
    section = transport.report(hops, trials, quiet, rounds=1, frames=3)
    assert [hop.name for hop in hops] == list(trials)
    assert all(len(t) == 1 and t[0][0] > 0 for t in trials.values())
    assert section.count("\n| bus, ") == 6 and transport.HTTP in section
