"""The checker itself: it must accept linearizable histories and reject the classic anomalies,
or the partition test could pass for the wrong reason."""
import math

from linearizability import Op, check, check_register


def test_accepts_sequential_and_overlapping_histories():
    assert check_register([Op(0, "k", "w", "1", 0, 1, True), Op(1, "k", "r", "1", 2, 3, True)])
    # A read overlapping a write may see either value.
    assert check_register([Op(0, "k", "w", "1", 0, 5, True), Op(1, "k", "r", None, 1, 2, True)])
    assert check_register([Op(0, "k", "w", "1", 0, 5, True), Op(1, "k", "r", "1", 1, 2, True)])


def test_rejects_stale_read_and_lost_write():
    assert not check_register([Op(0, "k", "w", "1", 0, 1, True), Op(0, "k", "w", "2", 2, 3, True),
                               Op(1, "k", "r", "1", 4, 5, True)])
    assert not check_register([Op(0, "k", "w", "1", 0, 1, True), Op(1, "k", "r", None, 2, 3, True)])


def test_unknown_writes_may_or_may_not_apply():
    assert check_register([Op(0, "k", "w", "1", 0, math.inf, False), Op(1, "k", "r", None, 1, 2, True)])
    assert check_register([Op(0, "k", "w", "1", 0, math.inf, False), Op(1, "k", "r", "1", 1, 2, True)])
    # ...but not flip back and forth.
    assert not check_register([Op(0, "k", "w", "1", 0, math.inf, False), Op(1, "k", "r", "1", 1, 2, True),
                               Op(1, "k", "r", None, 3, 4, True)])


def test_keys_are_independent():
    result = check([Op(0, "a", "w", "1", 0, 1, True), Op(1, "b", "r", None, 2, 3, True)])
    assert result == {"a": True, "b": True}
