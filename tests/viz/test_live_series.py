"""The live series kept up to date as rows arrive equal the series down-sampled from scratch from the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmviz.store.keys import parse_key
from mmviz.viz.live_series import ForkSeries, LiveSeries, MinMaxSampler, RunningEma, metric_frame
from mmviz.viz.series import ChartOptions, compute_debiased_ema, compute_minmax_indices, prepare_series

MODS = ["a", "b"]
OPTIONS = [
    ChartOptions(x_axis="step", smoothing=0.6, max_points=100),
    ChartOptions(x_axis="epoch", smoothing=0.0, max_points=1000),
    ChartOptions(x_axis="wall time", smoothing=0.9, max_points=37),
]


def parse(key: str):
    return parse_key(key, MODS)


def assert_same(got, want) -> None:
    """Two lists of Series are the same points: x, y and smoothed values bit for bit."""
    assert [(s.key, s.split, s.quantity, s.modality, s.n_raw) for s in got] == [
        (s.key, s.split, s.quantity, s.modality, s.n_raw) for s in want
    ]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.x, w.x, err_msg=g.key)
        np.testing.assert_array_equal(g.y, w.y, err_msg=g.key)
        assert (g.y_smooth is None) == (w.y_smooth is None), g.key
        if w.y_smooth is not None:
            np.testing.assert_array_equal(g.y_smooth, w.y_smooth, err_msg=g.key)


class Log:
    """A fake run's rows with store-like ids, handed out in polls as ``{key: (M, 5) array}`` (step, id order)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.rows: list[tuple] = []  # (key, id, step, epoch, wall, value)
        self.next_id = 1

    def log(self, key: str, steps, values=None) -> None:
        steps = np.atleast_1d(steps)
        values = self.rng.normal(size=steps.size) if values is None else np.atleast_1d(values)
        for step, value in zip(steps, values, strict=True):
            self.rows.append((key, self.next_id, int(step), step / 100, 1000.0 + step * 0.01, float(value)))
            self.next_id += 1

    def since(self, after: int) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        for key, *numbers in sorted((r for r in self.rows if r[1] > after), key=lambda r: (r[0], r[2], r[1])):
            out.setdefault(key, []).append(numbers)
        return {k: np.array(v, dtype=np.float64) for k, v in out.items()}

    def frame(self, run_id: str = "r") -> pd.DataFrame:
        return metric_frame(run_id, self.since(0), parse)


def test_minmax_sampler_equals_the_from_scratch_indices_at_every_length():
    rng = np.random.default_rng(3)
    y = rng.normal(size=5000)
    y[[17, 1234, 4000]] = [40.0, -40.0, np.nan]
    y[2000:2100] = np.nan  # a bucket of only NaN
    y[3000:3010] = 7.0  # ties: the first is kept
    for max_points in (4, 10, 101, 1000):
        sampler, n = MinMaxSampler(max_points), 0
        for chunk in (1, 1, 3, 50, 7, 400, 1, 1500, 3037):
            n += chunk
            sampler.update(y[:n])
            np.testing.assert_array_equal(sampler.indices(y[:n]), compute_minmax_indices(y[:n], max_points))
    idx = compute_minmax_indices(y, 1000)  # the spikes survive, and at most max_points points are kept
    assert {17, 1234} <= set(idx.tolist()) and 500 <= idx.size <= 1000


def test_running_ema_equals_the_from_scratch_ema():
    y = np.random.default_rng(4).normal(size=3000)
    y[[5, 900]] = [np.nan, np.inf]
    for weight in (0.001, 0.3, 0.9, 0.999):  # blocks of 50, 286, 3278 and 4096 points (EmaFilter)
        ema = RunningEma(weight)
        for end in (1, 2, 11, 50, 51, 285, 286, 287, 500, 2999, 3000):
            ema.update(y[:end])
            np.testing.assert_array_equal(ema.values, compute_debiased_ema(y[:end], weight))


def test_appends_in_any_order_and_new_keys_give_the_from_scratch_series():
    log, live, after = Log(), LiveSeries("r", parse), 0
    log.log("train/loss", np.arange(0, 3000))
    log.log("grad_norm/a", np.arange(0, 3000, 3))
    polls = [
        lambda: log.log("train/loss", np.arange(3000, 3001)),  # one new step
        lambda: log.log("val/acc/a", [2999], [0.5]),  # a new key, a per-epoch value
        lambda: log.log("train/loss", np.arange(3001, 4500)),  # a bucket size doubles
        lambda: log.log("train/loss", [1234], [99.0]),  # a late row for an earlier step
        lambda: log.log("grad_norm/a", [3, 3, 3000], [np.nan, -5.0, 2.0]),  # late rows and a tie in step
        lambda: log.log("grad_norm/b", np.arange(0, 20)),  # another new key
        lambda: None,  # nothing new
    ]
    for poll in [lambda: None, *polls]:
        poll()
        new = log.since(after)
        assert live.append(new) == sum(len(v) for v in new.values())
        after = log.next_id - 1
        frame = log.frame()
        for options in OPTIONS:
            for groups in (None, [("train", "loss")], [(None, "grad_norm"), ("val", "acc")]):
                assert_same(
                    live.series(options, groups, t0=999.0), prepare_series(frame, options, {"r": 999.0}, groups)
                )
    assert live.rebuilt == 2  # the late rows rebuilt their key's summaries, nothing else did
    assert_same(live.series(OPTIONS[2]), prepare_series(log.frame(), OPTIONS[2]))  # wall time from the first row


def test_a_fork_with_its_parents_history_equals_the_from_scratch_series():
    parent_log, child_log = Log(1), Log(2)
    child_log.next_id = 10_000  # the fork's rows come after the parent's in the store
    parent_log.log("train/loss", np.arange(0, 2000))
    parent_log.log("val/acc/a", np.arange(99, 2000, 100))
    parent, child = LiveSeries("p", parse), LiveSeries("c", parse)
    fork = ForkSeries("c", fork_epoch=10.0, parse=parse)
    seen = {"p": 0, "c": 0}

    def expected() -> pd.DataFrame:  # what the live page drew before: the parent's rows relabelled, then the fork's
        before, own = parent_log.frame("p"), child_log.frame("c")
        before = before[before["epoch"] <= 10.0]
        if not own.empty:
            before = before[before["step"] < own["step"].min()]
        return pd.concat([before.assign(run_id="c"), own], ignore_index=True)

    def poll() -> None:
        for live, log in ((parent, parent_log), (child, child_log)):
            live.append(log.since(seen[live.run_id]))
            seen[live.run_id] = log.next_id - 1
        fork.update(parent, child)
        for options in OPTIONS:
            assert_same(fork.series.series(options), prepare_series(expected(), options))

    poll()  # the fork has no rows yet: the parent's history up to epoch 10
    child_log.log("train/loss", np.arange(1000, 1300))  # the fork starts at the parent's step count
    poll()
    parent_log.log("train/loss", np.arange(2000, 2100))  # the parent goes on past the fork point: not drawn
    child_log.log("val/acc/a", [1099], [0.7])
    child_log.log("train/loss", np.arange(1300, 1301))
    poll()
    assert fork.series.keys["train/loss"].n == 1000 + 301


def test_metric_frame_is_the_stores_tidy_frame(tmp_path):
    from mmviz.store import open_store

    with open_store(tmp_path) as store:
        rid = store.create_run(config={}, name="r", dataset="d", method="m", fusion="concat", modalities=MODS)
        store.log_batch(
            rid, [(s, s / 10, 100.0 + s, k, s * 0.5) for s in range(30) for k in ("train/loss", "val/acc/a")]
        )
        got = metric_frame(rid, store.load_metric_arrays(rid), parse)
        want = store.load_metrics(rid)
    pd.testing.assert_frame_equal(got.sort_values("id", ignore_index=True), want.sort_values("id", ignore_index=True))


def test_a_first_read_of_step_and_value_only_is_completed_on_demand():
    log = Log(5)
    log.log("train/loss", np.arange(0, 500))
    log.log("train/loss", np.arange(0, 500, 7))  # equal steps: held in id order
    first = {k: v[:, [1, 4]] for k, v in log.since(0).items()}  # step, value
    live = LiveSeries("r", parse)
    live.append(first, columns=("step", "value"))
    seen = log.next_id - 1
    log.log("train/loss", [500, 100, 100], [1.0, 2.0, 3.0])  # a poll with every column, two rows late
    live.append(log.since(seen))
    assert_same(live.series(OPTIONS[0]), prepare_series(log.frame(), OPTIONS[0]))  # the step axis needs no more
    with pytest.raises(ValueError, match="'wall time' column of 'train/loss' has not been read yet"):
        live.series(OPTIONS[2])
    held, full = live.keys["train/loss"], log.since(0)["train/loss"]
    np.testing.assert_array_equal(held.points[:, 1], full[:, 1])  # held in the store's (step, id) order
    for i, column in ((0, "id"), (2, "epoch"), (3, "wall_time")):
        held.fill(column, full[:, i])
    np.testing.assert_array_equal(held.points, full)
    for options in OPTIONS:
        assert_same(live.series(options), prepare_series(log.frame(), options))
    with pytest.raises(ValueError, match="need the step and value"):
        live.append({"x/y": np.zeros((1, 2))}, columns=("id", "value"))


@pytest.mark.parametrize("bad", [np.empty((0, 5))])
def test_empty_appends_change_nothing(bad):
    live = LiveSeries("r", parse)
    assert live.append({"train/loss": bad}) == 0 and live.keys == {} and live.series(OPTIONS[0]) == []
