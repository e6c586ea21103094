"""PositionMirror: the token-per-position bookkeeping every engine keeps beside its cache."""

from __future__ import annotations

from localctx.engine.positions import PositionMirror


def test_remove_middle_then_shift_down_is_contiguous_again() -> None:
    mirror = PositionMirror()
    mirror.extend(range(10, 20))
    mirror.remove(2, 5)
    assert mirror.n_past == 10 and mirror.cells_used == 7 and mirror.pos_range() == (0, 9)
    mirror.shift(5, -1, -3)
    assert mirror.tokens == [10, 11, 15, 16, 17, 18, 19] and mirror.n_past == 7


def test_removing_the_tail_moves_n_past_back() -> None:
    mirror = PositionMirror()
    mirror.extend([1, 2, 3, 4])
    mirror.remove(2, -1)
    assert mirror.tokens == [1, 2] and mirror.n_past == 2


def test_shift_up_leaves_a_hole_at_the_start() -> None:
    mirror = PositionMirror()
    mirror.extend([7, 8])
    mirror.shift(0, -1, 100)
    assert mirror.pos_range() == (100, 101) and mirror.n_past == 102 and mirror.tokens == [7, 8]
    mirror.reset()
    assert mirror.n_past == 0 and mirror.pos_range() == (-1, -1) and mirror.last is None
