"""relay.delivery.pacing: slots shared through Redis, evenly spaced, with the margin."""

from __future__ import annotations

import pytest

from relay.delivery.pacing import RateLimiter, interval_ms


def test_slots_are_a_period_over_count_apart_plus_the_margin() -> None:
    assert interval_ms(1, 1.0) == 1100
    assert interval_ms(30, 60.0) == 2200
    assert interval_ms(10**6, 1.0) == 1  # never zero


def test_two_limiters_on_one_redis_book_one_sequence(redis_conn) -> None:
    """Two workers (two limiters) book slots in turn, each after the one before."""
    first, second = RateLimiter(redis_conn), RateLimiter(redis_conn)
    waits = [first.reserve("t", 2, 1.0), second.reserve("t", 2, 1.0), first.reserve("t", 2, 1.0)]
    assert waits[0] == pytest.approx(0, abs=0.05)
    assert waits[1] == pytest.approx(0.55, abs=0.05)
    assert waits[2] == pytest.approx(1.10, abs=0.05)
    assert first.reserve("other", 2, 1.0) == pytest.approx(0, abs=0.05)  # per name


def test_a_wait_over_the_maximum_books_nothing(redis_conn) -> None:
    limiter = RateLimiter(redis_conn, max_wait=1.0)
    assert limiter.reserve("slow", 1, 5.0) == pytest.approx(0, abs=0.05)
    assert limiter.reserve("slow", 1, 5.0) == pytest.approx(5.5, abs=0.05)  # over: not booked
    assert limiter.reserve("slow", 1, 5.0) == pytest.approx(5.5, abs=0.05)  # so the same again
