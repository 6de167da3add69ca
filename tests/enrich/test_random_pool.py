"""The random bytes behind flow ids and device ids: pooled, never handed out twice."""

from __future__ import annotations

import os

from router.enrich.flow import _RandomPool


def test_slices_are_fresh_and_of_the_size_asked() -> None:
    pool = _RandomPool()
    taken = [pool.take(16) for _ in range(2 * _RandomPool.POOL // 16 + 3)]
    assert {len(t) for t in taken} == {16}
    # Crossing a refill included: 2^-128 per pair to collide by chance.
    assert len(set(taken)) == len(taken)
    assert len(pool.take(_RandomPool.POOL + 1)) == _RandomPool.POOL + 1


def test_a_forked_child_never_repeats_its_parents_bytes() -> None:
    # gunicorn forks the workers after the app is loaded: had the pool been filled
    # before, two workers would hand out the same flow ids.
    pool = _RandomPool()
    pool.take(16)  # the pool is now full of bytes both sides would see
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, pool.take(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != pool.take(16)
