"""The probes' cost budget: cadence is the highest rate; calls are skipped to keep a probe's time share bounded."""

import dataclasses

import pytest

from mmviz.contracts import StepInfo
from mmviz.probes import base
from mmviz.probes.base import Probe, ProbeConfig


class Clock:
    """A fake ``time.perf_counter``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(base.time, "perf_counter", c)
    return c


def make_probe(clock: Clock, cost: float, **fields):
    """A step probe whose two hooks together take ``cost`` seconds (not registered anywhere)."""

    class Costly(Probe):
        cadence = "step"

        def on_after_backward(self, out, batch, info):
            clock.now += cost / 2

        def on_before_optimizer_step(self, out, batch, info):
            clock.now += cost / 2

    return Costly(dataclasses.replace(ProbeConfig(), **fields))


def train(probe: Probe, clock: Clock, steps: int, step_time: float) -> list[int]:
    """Drive ``steps`` training steps of ``step_time`` seconds each; return the steps at which the probe ran."""
    ran = []
    for step in range(steps):
        info = StepInfo(step, 1, step, steps, 1)
        if probe.due_step(info):
            probe.on_after_backward(None, None, info)
            probe.on_before_optimizer_step(None, None, info)
            ran.append(step)
        clock.now += step_time
    return ran


def test_without_a_budget_the_probe_runs_at_its_cadence(clock):
    probe = make_probe(clock, cost=0.01, max_overhead=0.0, every_n_steps=3)
    assert train(probe, clock, 10, step_time=0.001) == [0, 3, 6, 9]
    assert probe.skipped == 0


def test_a_costly_probe_thins_out_to_its_time_share(clock):
    probe = make_probe(clock, cost=0.001, max_overhead=0.05)  # 1 ms a call, 5 % of the time
    ran = train(probe, clock, 2000, step_time=0.002)
    assert ran[:2] == [0, 1]  # the first due calls run: a warm-up, then a measured one
    share = len(ran) * 0.001 / clock.now
    assert 0.04 < share <= 0.05 + 1e-9
    assert probe.skipped == 2000 - len(ran)


def test_a_slow_first_call_is_a_warm_up_and_does_not_stall_the_probe(clock):
    probe = make_probe(clock, cost=0.0001, max_overhead=0.01)
    probe.on_after_backward = lambda *a: setattr(clock, "now", clock.now + 5.0)  # a 5 s cold start, once
    probe.due_step(StepInfo(0, 1, 0, 10, 1))
    probe.on_after_backward(None, None, None)
    del probe.on_after_backward
    assert train(probe, clock, 20, step_time=0.1) == list(range(20))


def test_a_probe_whose_first_call_is_no_warm_up_is_budgeted_from_it(clock):
    """A probe repeating work the step has warmed up (gradient conflict) counts its first call: no unbudgeted
    second call right after it (it cost several percent of a short run's steps)."""
    probe = make_probe(clock, cost=0.01, max_overhead=0.01)  # 10 ms a call, 1 %: once per second of training
    probe.first_call_is_warm_up = False
    assert train(probe, clock, 250, step_time=0.01) == [0, 99, 198]  # each 1 s of time after the last one began
    warm = make_probe(clock, cost=0.01, max_overhead=0.01)  # the default: the second call is the measured one
    assert train(warm, clock, 250, step_time=0.01)[:2] == [0, 1]


def test_gradient_conflict_counts_its_first_call():
    from mmviz.probes import PROBES

    assert PROBES.get("grad_conflict").factory.first_call_is_warm_up is False


def test_a_cheap_probe_on_a_slow_step_runs_every_time(clock):
    probe = make_probe(clock, cost=0.0001, max_overhead=0.01)  # 0.1 ms on a 100 ms step: 0.1 %
    assert train(probe, clock, 50, step_time=0.1) == list(range(50))


def test_nested_hooks_are_timed_once(clock):
    class Parent(Probe):
        cadence = "epoch"

        def on_epoch_end(self, epoch, info, evaluation):
            clock.now += 0.5

    class Child(Parent):
        def on_epoch_end(self, epoch, info, evaluation):
            super().on_epoch_end(epoch, info, evaluation)
            clock.now += 0.25

    probe = Child()
    probe.on_epoch_end(1, None, None)
    assert probe._spent == pytest.approx(0.75)
    probe.due_epoch(1)
    assert probe._cost == pytest.approx(0.75) and probe._spent == 0


def test_a_cost_hint_delays_the_first_call_of_an_expensive_probe(clock):
    probe = make_probe(clock, cost=0.01, max_overhead=0.01)
    probe.cost_hint = 0.01  # needs 1 s of training before it may run
    ran = train(probe, clock, 300, step_time=0.01)
    assert ran == [100, 199, 298]  # then every 1 s of wall time (the calls themselves included)


def test_a_step_probe_budgets_against_training_time_not_epoch_end_work(clock):
    """Long epoch-end work (evaluation, epoch diagnostics) must not buy a per-step probe more of the steps."""
    from types import SimpleNamespace

    from mmviz.training.context import TrainClock

    def run(probe) -> int:
        train_clock = probe.ctx.train_clock if probe.ctx is not None else None
        runs = 0
        for _ in range(5):
            if train_clock is not None:
                train_clock.resume()
            runs += len(train(probe, clock, 40, step_time=0.001))
            if train_clock is not None:
                train_clock.pause()
            clock.now += 1.0  # one second of epoch-end work
        return runs

    # a 10 ms call with 5 %: one call per 200 ms of training; each epoch has only 40 ms of steps
    on_wall = make_probe(clock, cost=0.01, max_overhead=0.05)
    on_steps = make_probe(clock, cost=0.01, max_overhead=0.05)
    on_steps.ctx = SimpleNamespace(train_clock=TrainClock())
    wall_runs, step_runs = run(on_wall), run(on_steps)
    # (the first call is a warm-up and the second measures the cost, so both clocks start with two calls)
    assert wall_runs >= 6  # on wall time every epoch-end pause pays for a call: ~25 % of the steps' time
    assert step_runs <= 3  # on training time: ~5 % of the 200 ms of steps
