"""The time estimate's maths (contracts.progress) and the Reporter reading it, on a fake clock with
hand-made counts and unit times (known answers). Torch-free and fast."""

import pytest

from blender_stchain.contracts import progress
from blender_stchain.contracts.progress import CostModel, Item


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def model():
    """anchor: 4 DiT steps of 10 FLOP; surface: 1000 queries at 1 ms; windows: 2 steps of 40 FLOP
    (costed like the DiT until measured), then 3 frames at 0.5 s."""
    return CostModel({"load": [], "anchor": [Item("dit", 10)] * 4, "surface": [Item("surface", 1000)],
                      "windows": [Item("denoiser", 40)] * 2 + [Item("frame")] * 3},
                     calibrated={"surface": 1e-3, "frame": 0.5}, like={"denoiser": "dit"})


def test_nothing_is_predicted_while_a_unit_is_unknown():
    c = model()
    assert c.unit("dit") is None and c.unit("denoiser") is None
    assert c.remaining("anchor", 0) is None and c.total() is None
    assert c.seconds("surface") == pytest.approx(1.0) and c.seconds("windows", 2) == pytest.approx(1.5)


def test_a_measured_kind_prices_its_like_kinds_and_the_first_call_is_set_up():
    c = model()
    c.observe("dit", 10, 0.3)  # first call: set-up included; no prior, so it stands alone
    assert c.unit("dit") == pytest.approx(0.03)
    c.observe("dit", 10, 0.1)
    c.observe("dit", 10, 0.2)
    assert c.unit("dit") == pytest.approx(0.015)  # the first is left out once others exist
    assert c.unit("denoiser") == pytest.approx(0.015)  # FLOPs priced like the DiT's
    # anchor from item 2.5 on: 1.5 steps x 0.15 s; surface 1 s; windows 2 x 0.6 s + 3 x 0.5 s
    assert c.remaining("anchor", 2.5) == pytest.approx(0.225 + 1.0 + 1.2 + 1.5)


def test_a_prior_counts_as_one_observation():
    c = model()
    c.observe("frame", 1, 2.0)  # first: set-up, left out; the calibrated 0.5 s stands in
    assert c.unit("frame") == pytest.approx(0.5)
    c.observe("frame", 1, 1.0)
    assert c.unit("frame") == pytest.approx((0.5 + 1.0) / 2)
    c.observe("frame", 1, 1.0)
    assert c.unit("frame") == pytest.approx((0.5 + 2.0) / 3)


def test_only_whole_items_of_one_kind_are_measured():
    c = model()
    c.advance("windows", 1, 3, 5.0)  # a denoiser step and a frame: which one took the time?
    c.advance("windows", 2, 2.5, 5.0)  # half a frame: the time is not spread evenly over its parts
    assert c.measured == {}
    c.advance("anchor", 0, 2, 0.4)  # two steps, one span
    assert c.measured == {"dit": [(20.0, 0.4)]}
    assert c.position("windows", 0.6) == pytest.approx(3.0) and c.current("windows", 3.0) == pytest.approx(0.5)
    assert c.current("windows", 5.0) is None


def test_parts_from_a_whole_position_to_the_next_are_measured_as_one_span():
    """A window's batched frames are reported in fractions and end together: the span from the last
    step (whole) through the parts to the end (whole) is the frames' time; a chain of parts that does
    not start whole, or is broken, is not."""
    c = CostModel({"windows": [Item("denoiser", 40)] * 2 + [Item("frame", 0.0)] + [Item("frame")] * 2})
    c.advance("windows", 2, 2.6, 1.0)
    c.advance("windows", 2.6, 4.2, 2.0)
    c.advance("windows", 4.2, 5, 0.5)  # the known frame (0 units) and two chained frames
    assert c.measured == {"frame": [(2.0, 3.5)]}
    c.advance("windows", 2.5, 3, 1.0)  # began mid-item
    c.advance("windows", 2, 2.5, 1.0)
    c.advance("windows", 2.7, 5, 1.0)  # does not follow 2.5: the time of 2.5-2.7 is not known
    c.advance("windows", 1, 2.5, 1.0)
    c.advance("windows", 2.5, 5, 1.0)  # a denoiser step and frames: which took the time?
    assert c.measured == {"frame": [(2.0, 3.5)]}


def test_like_cycles_end_in_no_prediction():
    c = CostModel({"s": [Item("a")]}, like={"a": "b", "b": "a"})
    assert c.unit("a") is None and c.remaining("s", 0) is None


def test_reporter_eta_from_costs_is_honest_from_the_second_step():
    """Loading says nothing; the first anchor step carries set-up (not measured); from the second one the
    ETA is every item left at the measured and calibrated units, and it counts down to exactly 0."""
    clock, seen = Clock(), []
    rep = progress.Reporter(seen.append, None, {"load": 1, "anchor": 4, "surface": 4, "windows": 8}, clock=clock)
    rep.progress("load", 0)
    clock.t = 3.0
    rep.use_costs(model())
    rep.progress("load", 1)
    clock.t = 3.5  # step 1: the image encode and set-up, not measured
    rep.progress("anchor", 1, 4)
    assert [e.eta_s for e in seen] == [None, None, None]
    clock.t = 3.6  # step 2: 10 FLOP in 0.1 s
    rep.progress("anchor", 2, 4)
    # 2 steps x 0.1 + surface 1.0 + 2 denoiser steps x 0.4 + 3 frames x 0.5
    assert seen[-1].eta_s == pytest.approx(0.2 + 1.0 + 0.8 + 1.5)
    assert seen[-1].fraction == pytest.approx(3.6 / (3.6 + 3.5), abs=1e-4)  # elapsed share of elapsed + left
    for step in (3, 4):
        clock.t += 0.1
        rep.progress("anchor", step, 4)
    rep.progress("surface", 0)
    assert seen[-1].eta_s == pytest.approx(1.0 + 0.8 + 1.5)
    clock.t += 2.0  # the surface took 2 s: a single item, measured but its prior still counts once
    rep.progress("surface", 1)
    assert seen[-1].eta_s == pytest.approx(0.8 + 1.5)
    clock.t += 0.8  # first denoiser step: set-up; the DiT's unit still prices the second
    rep.progress("windows", 1, 5)
    assert seen[-1].eta_s == pytest.approx(0.4 + 1.5)
    clock.t += 0.8
    rep.progress("windows", 2, 5)
    for frame in (3, 4, 5):
        clock.t += 0.5
        rep.progress("windows", frame, 5)
    etas = [e.eta_s for e in seen[3:]]
    assert all(a >= b for a, b in zip(etas, etas[1:])) and etas[-1] == 0.0 and seen[-1].fraction == 1.0


def test_reporter_with_costs_says_estimating_once_an_item_overruns():
    clock, seen = Clock(), []
    rep = progress.Reporter(seen.append, None, {"load": 1}, clock=clock)
    c = model()
    c.observe("dit", 10, 0.1)
    rep.use_costs(c)
    rep.progress("surface", 0)
    assert seen[-1].eta_s == pytest.approx(1.0 + 0.8 + 1.5)  # surface, 2 x 40 FLOP at 0.01 s, frames
    clock.t = 0.6
    rep.progress("surface", 0)  # still running: counts down
    assert seen[-1].eta_s == pytest.approx(0.4 + 0.8 + 1.5)
    clock.t = 5.0
    rep.progress("surface", 0)  # far past its 1 s: no false figure
    assert seen[-1].eta_s is None
