import pytest

from stages.track.reorder import ReorderBuffer, ReorderOverflow


def test_out_of_order_items_come_out_in_order_per_job():
    buffer = ReorderBuffer()
    for index in (2, 0, 3):
        buffer.add("a", index, f"a{index}")
    buffer.add("b", 0, "b0")
    assert list(buffer.ready("a")) == [(0, "a0")]
    buffer.add("a", 1, "a1")
    assert list(buffer.ready("a")) == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert list(buffer.ready("b")) == [(0, "b0")]
    assert buffer.next_index("a") == 4


def test_duplicates_are_refused():
    buffer = ReorderBuffer()
    assert buffer.add("a", 1, "x")
    assert not buffer.add("a", 1, "again")
    buffer.add("a", 0, "y")
    list(buffer.ready("a"))
    assert not buffer.add("a", 0, "late duplicate")


def test_bounded():
    buffer = ReorderBuffer(max_pending=2)
    buffer.add("a", 5, 0)
    buffer.add("a", 6, 0)
    with pytest.raises(ReorderOverflow):
        buffer.add("a", 7, 0)
