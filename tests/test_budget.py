"""eventsources.budget: the CPU token bucket and the levels a source degrades through (caller's clock)."""

from __future__ import annotations

import pytest

from eventsources.budget import CpuBudget, Level


def test_no_budget_is_always_full() -> None:
    budget = CpuBudget()
    budget.charge(100.0, 0.0)
    assert budget.rate is None and budget.level(1.0) is Level.FULL


def test_levels_follow_the_bucket() -> None:
    budget = CpuBudget(burst=1.0, lean=0.5)
    budget.set_rate(0.1, now=0.0)  # 10 % of a core; the bucket starts full with 0.1 s
    assert budget.level(0.0) is Level.FULL
    budget.charge(0.1, 0.0)  # the whole bucket: empty now
    assert budget.level(0.0) is Level.LEAN
    budget.charge(0.08, 0.0)  # 0.8 s of budget in debt: past the lean limit (0.5 s of it)
    assert budget.level(0.0) is Level.SHED
    assert budget.level(0.2) is Level.SHED  # 0.02 s back: still 0.06 in debt
    assert budget.level(0.4) is Level.LEAN  # 0.04 in debt
    assert budget.level(0.9) is Level.FULL  # out of debt


def test_debt_is_capped_so_recovery_is_quick() -> None:
    budget = CpuBudget(0.1, burst=1.0, lean=0.5)
    budget.charge(1000.0, 0.0)  # far beyond: forgiven down to twice the lean debt (0.1 s)
    assert budget.tokens == pytest.approx(-0.1)
    assert budget.level(1.0) is Level.LEAN and budget.level(1.1) is Level.FULL


def test_the_bucket_holds_at_most_burst_seconds() -> None:
    budget = CpuBudget(burst=1.0)
    budget.set_rate(0.2, now=0.0)
    budget.level(3600.0)  # an hour idle
    assert budget.tokens == pytest.approx(0.2)


def test_average_spending_stays_within_the_budget() -> None:
    """100 batches a second, costing 0.4 CPU s/s while FULL, 0.25 LEAN, 0.05 SHED."""
    budget = CpuBudget(burst=1.0, lean=0.5)
    budget.set_rate(0.3, now=0.0)
    cost = {Level.FULL: 0.004, Level.LEAN: 0.0025, Level.SHED: 0.0005}
    spent, levels = 0.0, dict.fromkeys(Level, 0)
    for i in range(6000):  # 60 s
        now = i / 100
        level = budget.level(now)
        levels[level] += 1
        spent += cost[level]
        budget.charge(cost[level], now)
    assert spent <= 0.3 * 60 + 0.3 + 0.3 * 0.5 + 0.01  # the budget, the bucket it began with, the lean debt
    assert levels[Level.FULL] and levels[Level.LEAN] and not levels[Level.SHED]  # lean work fits: nothing shed
    budget.set_rate(0.1, now=60.0)  # too little even for lean work: some batches shed
    for i in range(6000):
        now = 60 + i / 100
        level = budget.level(now)
        levels[level] += 1
        budget.charge(cost[level], now)
    assert levels[Level.SHED]


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CpuBudget(0.0)


def test_a_changed_budget_keeps_what_the_bucket_held_no_new_burst() -> None:
    budget = CpuBudget(burst=1.0, lean=0.5)
    budget.set_rate(0.2, now=0.0)  # a first budget: a full bucket (0.2 s)
    budget.charge(0.26, 0.0)  # 0.06 s in debt: lean
    budget.set_rate(0.1, now=0.0)  # tightened: still in debt, not refilled
    assert budget.tokens == pytest.approx(-0.06) and budget.level(0.0) is Level.SHED  # past 0.5 s of the new rate
    budget.set_rate(0.1, now=10.0)  # refilled by the time it changes, up to the new bucket (0.1 s)
    assert budget.tokens == pytest.approx(0.1)
    budget.set_rate(None, now=10.0)
    budget.set_rate(0.3, now=10.0)  # after none, a budget is a first one again
    assert budget.tokens == pytest.approx(0.3)


def test_overspend_bounds_what_a_source_spends_beyond_its_rate() -> None:
    """Whatever the work costs, spending over any stretch stays within rate * elapsed + OVERSPEND * rate."""
    from eventsources.budget import OVERSPEND

    budget = CpuBudget(0.1)
    cost = {Level.FULL: 0.02, Level.LEAN: 0.012, Level.SHED: 0.0}
    spent = 0.0
    for i in range(1000):  # 20 batches a second for 50 s
        now = i / 20
        level = budget.level(now)
        spent += cost[level]
        budget.charge(cost[level], now)
        assert spent <= 0.1 * now + OVERSPEND * 0.1 + 0.02 + 1e-9  # + the batch just made
