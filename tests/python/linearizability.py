"""A Wing–Gong/Lowe (WGL) linearizability checker for a key-value store of registers.

Each operation has an invocation and a completion time (from the client's clock) and a result.
A write whose outcome is unknown (timeout, 5xx, connection error) may or may not have taken
effect: it completes "never" and may be left out of the linearization. Keys are independent
registers, so each key's history is checked on its own (P-compositionality).
"""
import math
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional


@dataclass
class Op:
    client: int
    key: str
    kind: str              # "w" or "r"
    value: Optional[str]   # written value, or value read (None = not found)
    call: float
    ret: float             # math.inf when the outcome is unknown
    ok: bool               # completed with a definite result


def check_register(ops: List[Op], initial: Optional[str] = None) -> bool:
    """True if the history of one register is linearizable."""
    ops = [o for o in ops if o.ok or o.kind == "w"]          # failed reads carry no information
    ops = [Op(o.client, o.key, o.kind, o.value, o.call, o.ret if o.ok else math.inf, o.ok) for o in ops]
    ops.sort(key=lambda o: o.call)
    n = len(ops)
    required = sum(1 << i for i, o in enumerate(ops) if o.ok)
    seen = set()
    sys.setrecursionlimit(max(10_000, 4 * n))

    def search(done: int, state: Optional[str]) -> bool:
        if done & required == required:
            return True
        if (done, state) in seen:
            return False
        seen.add((done, state))
        # An op can go next only if it was invoked before every pending op's completion.
        horizon = min((o.ret for i, o in enumerate(ops) if not done >> i & 1), default=math.inf)
        for i, o in enumerate(ops):
            if done >> i & 1:
                continue
            if o.call > horizon:
                break
            if o.kind == "r":
                if o.value == state and search(done | 1 << i, state):
                    return True
            elif search(done | 1 << i, o.value):
                return True
        return False

    return search(0, initial)


def check(history: List[Op]) -> Dict[str, bool]:
    """Linearizability per key."""
    by_key: Dict[str, List[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    return {key: check_register(ops) for key, ops in by_key.items()}


def _self_test() -> None:
    ok = [Op(0, "k", "w", "a", 0, 1, True), Op(1, "k", "r", "a", 2, 3, True)]
    assert check_register(ok)
    stale = [Op(0, "k", "w", "a", 0, 1, True), Op(0, "k", "w", "b", 2, 3, True), Op(1, "k", "r", "a", 4, 5, True)]
    assert not check_register(stale)
    concurrent = [Op(0, "k", "w", "a", 0, 10, True), Op(1, "k", "r", "a", 1, 2, True), Op(1, "k", "r", None, 3, 4, True)]
    assert not check_register(concurrent)
    unknown = [Op(0, "k", "w", "a", 0, math.inf, False), Op(1, "k", "r", None, 1, 2, True), Op(1, "k", "r", "a", 3, 4, True)]
    assert check_register(unknown)


_self_test()
