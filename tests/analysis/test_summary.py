"""The imbalance banner and the comparison table, from hand-made stored signals."""

from __future__ import annotations

import pandas as pd
import pytest

from mmviz.analysis.summary import (
    compute_compare_table,
    compute_imbalance_banner,
    differing_settings,
    dominance_since,
    find_reference_runs,
    run_family,
    shapley_shares,
)

DATA = {"views": ["pix", "fou"]}


def _frame(values: dict[str, list[float]], run="r") -> pd.DataFrame:
    from mmviz.store.keys import parse_key

    rows = []
    for key, series in values.items():
        split, quantity, modality = parse_key(key, ["pix", "fou"])
        for e, v in enumerate(series, start=1):
            rows.append((run, len(rows), e * 10, float(e), 0.0, key, split, quantity, modality, v))
    cols = ["run_id", "id", "step", "epoch", "wall_time", "key", "split", "quantity", "modality", "value"]
    return pd.DataFrame(rows, columns=cols)


def _run(
    run_id,
    method="baseline",
    modality="",
    status="finished",
    best=None,
    created=0.0,
    data=DATA,
    parent=None,
    best_epoch=None,
):
    return {
        "run_id": run_id,
        "name": run_id,
        "method": method,
        "dataset": "mfeat",
        "modalities": ["pix", "fou"],
        "config": {
            "data": data,
            "method_params": {"modality": modality} if method == "unimodal" else {},
            "optim": {"lr": 0.001},
        },
        "effective_status": status,
        "best_val_acc": best,
        "best_epoch": best_epoch,
        "created": created,
        "parent_run_id": parent,
    }


def test_banner_names_the_under_trained_modality_and_the_shapley_leader():
    run = _run("joint")
    frame = _frame(
        {
            "val/acc_probe/pix": [0.80, 0.90, 0.92, 0.93],
            "val/acc_probe/fou": [0.30, 0.35, 0.40, 0.41],
            "val/shapley/pix": [0.20, 0.50, 0.55, 0.60],
            "val/shapley/fou": [0.20, 0.15, 0.15, 0.17],
            "imbalance/index": [0.0, 0.5, 0.6, 0.56],
        }
    )
    refs = {  # best_val_acc is the fused accuracy: the banner must not compare with it
        "fou": _run("fou-alone", "unimodal", "fou", best=0.61, best_epoch=2),
        "pix": _run("pix-alone", "unimodal", "pix", best=0.99, best_epoch=3),
    }
    ref_frames = {  # the same linear probe on each reference's own encoder, read at its best epoch
        "fou": _frame({"val/acc_probe/fou": [0.50, 0.58, 0.55]}, run="fou-alone"),
        "pix": _frame({"val/acc_probe/pix": [0.80, 0.85, 0.90]}, run="pix-alone"),
    }
    banner = compute_imbalance_banner(run, frame, refs, ref_frames)
    assert (banner.measure, banner.alone, banner.joint) == (
        "acc_probe",
        {"fou": 0.58, "pix": 0.90},
        pytest.approx({"pix": 0.93, "fou": 0.41}),
    )
    assert banner.level == "warning" and not banner.missing_references
    assert (
        banner.lines[0] == "fou is under-trained: linear-probe accuracy 41% vs 58% when trained alone (run fou-alone)."
    )
    assert "pix keeps up: linear-probe accuracy 93% vs 90% when trained alone (run pix-alone)." in banner.lines
    assert "The fused prediction relies most on pix: it has taken 78% of the Shapley contribution since epoch 2." in (
        banner.lines
    )
    assert any(line.startswith("Imbalance index 0.56 at epoch 4") for line in banner.lines)


def test_banner_compares_like_with_like_or_not_at_all():
    """A reference that never logged the joint run's measure is named, not compared with its fused accuracy."""
    run = _run("joint")
    frame = _frame({"val/acc_probe/pix": [0.80], "val/acc_probe/fou": [0.40]})
    refs = {"fou": _run("fou-alone", "unimodal", "fou", best=0.9, best_epoch=1)}
    banner = compute_imbalance_banner(run, frame, refs, {"fou": _frame({"val/acc_ncm/fou": [0.9]}, run="fou-alone")})
    assert banner.alone == {} and not any("under-trained" in line for line in banner.lines)
    assert "fou: the reference (run fou-alone) has no linear-probe accuracy logged yet" in banner.lines[0]
    running = _run("fou-alone", "unimodal", "fou", status="running", best_epoch=None)  # no best epoch yet: latest
    frames = {"fou": _frame({"val/acc_probe/fou": [0.3, 0.5]}, run="fou-alone")}
    assert compute_imbalance_banner(run, frame, {"fou": running}, frames).alone == {"fou": 0.5}


def test_banner_reports_a_modality_that_adds_nothing_or_hurts_and_names_the_dominant():
    run = _run("joint")
    frame = _frame(
        {
            "val/shapley/pix": [0.60, 0.62],
            "val/shapley/fou": [0.01, -0.002],
            "imbalance/index": [0.49, 0.502],
            "imbalance/dominant/pix": [1.0, 1.0],
            "imbalance/dominant/fou": [0.0, 0.0],
        }
    )
    banner = compute_imbalance_banner(run, frame, {})
    assert banner.shares["fou"] == pytest.approx(-0.002 / 0.622) and banner.shares["fou"] <= 0
    assert banner.dominant == "pix" and banner.index == pytest.approx(0.502) and banner.level == "warning"
    assert "fou adds nothing to val accuracy: its Shapley share is 0%." in banner.lines
    hurting = _frame({"val/shapley/pix": [0.6], "val/shapley/fou": [-0.2]})
    lines = compute_imbalance_banner(run, hurting, {}).lines
    assert "fou lowers val accuracy: its Shapley share is -25% (masking it helps)." in lines


def test_banner_without_references_says_so_and_compares_modalities():
    banner = compute_imbalance_banner(_run("joint"), _frame({"val/acc/pix": [0.9], "val/acc/fou": [0.5]}), {})
    assert banner.missing_references == ["pix", "fou"]
    assert banner.lines[0] == "fou lags pix in what it has learned: head-split accuracy 50% vs 90% at epoch 1."
    assert "No unimodal reference run for pix, fou" in banner.lines[-1]
    empty = compute_imbalance_banner(_run("joint"), _frame({}), {})
    assert empty.lines[0].startswith("Waiting for the first evaluation")


def test_banner_reconciles_a_lagging_modality_that_the_fused_model_relies_on():
    # issue 11: "image lags audio: NCM 63% vs 92%" next to "image has taken 61% of the Shapley contribution"
    run = {**_run("joint"), "modalities": ["image", "audio"]}
    frame = _frame({"val/acc_ncm/pix": [0.6, 0.63], "val/acc_ncm/fou": [0.9, 0.92]})
    frame = frame.assign(modality=frame["modality"].map({"pix": "image", "fou": "audio"}))
    shares = _frame({"imbalance/share/pix": [0.6, 0.61], "imbalance/share/fou": [0.4, 0.39]})
    frame = pd.concat([frame, shares.assign(modality=shares["modality"].map({"pix": "image", "fou": "audio"}))])
    lines = compute_imbalance_banner(run, frame, {}).lines
    assert lines[0] == "image lags audio in what it has learned: NCM accuracy 63% vs 92% at epoch 2."
    assert lines[1].startswith("The fused prediction relies most on image: it has taken 60% of the Shapley")
    assert lines[2] == (
        "Both hold at once: accuracy measures what each modality's own features have learned, Shapley how much the "
        "fused prediction leans on it. The fused model leans on image although audio's features have learned more, "
        "so audio is under-used by the fusion."
    )
    # when the modality that learned more is also the one relied on, there is nothing to reconcile
    agree = compute_imbalance_banner(_run("joint"), _frame({"val/acc_ncm/pix": [0.9], "val/acc_ncm/fou": [0.5],
                                                            "imbalance/share/pix": [0.8], "imbalance/share/fou": [0.2]}), {})  # fmt: skip
    assert not [line for line in agree.lines if line.startswith("Both hold at once")]


def test_reference_runs_need_the_same_data_and_prefer_finished_newest():
    runs = pd.DataFrame(
        [
            _run("old", "unimodal", "fou", created=1),
            _run("new", "unimodal", "fou", created=2),
            _run("going", "unimodal", "fou", status="running", created=3),
            _run("crashed", "unimodal", "pix", "failed"),
            _run("other-data", "unimodal", "pix", data={"views": ["pix", "kar"]}),
            _run("joint"),
        ]
    )
    refs = find_reference_runs(runs, _run("joint"))
    assert {m: r["run_id"] for m, r in refs.items()} == {"fou": "new"}


def test_logged_shares_win_over_shapley_values_and_dominance_needs_a_lead():
    shares = shapley_shares(
        _frame(
            {
                "imbalance/share/pix": [0.5, 0.8],
                "imbalance/share/fou": [0.5, 0.2],
                "val/shapley/pix": [0.1, 0.1],
                "val/shapley/fou": [0.9, 0.9],
            }
        )
    )
    assert shares["pix"].tolist() == [0.5, 0.8]
    assert dominance_since(shares, 0.6) == ("pix", 2, 0.8)
    assert dominance_since(shares.iloc[:1], 0.6) is None


def test_family_and_compare_table():
    runs = pd.DataFrame(
        [_run("root"), _run("kid", "ogm_ge", parent="root"), _run("grandkid", parent="kid"), _run("stranger")]
    )
    assert run_family(runs, "grandkid") == ["root", "kid", "grandkid"]
    chosen = [_run("root"), {**_run("kid", "ogm_ge", parent="root"), "config": {"data": DATA, "optim": {"lr": 0.01}}}]
    frame = pd.concat(
        [
            _frame(
                {"val/acc/fused": [0.5, 0.7, 0.6], "val/acc/pix": [0.4, 0.6, 0.5], "imbalance/index": [0.1, 0.2, 0.3]},
                "root",
            ),
            _frame({"val/acc/fused": [0.8], "val/acc_ncm/fou": [0.55]}, "kid"),
        ]
    )
    table = compute_compare_table(chosen, frame)
    assert (
        table.loc[0, "best epoch"] == 2
        and table.loc[0, "val acc fused"] == 0.7
        and table.loc[0, "pix head split"] == 0.6
    )
    assert table.loc[0, "imbalance index"] == 0.3 and table.loc[1, "fou NCM"] == 0.55
    assert table.loc[1, "parent"] == "root" and table.loc[1, "optim.lr"] == 0.01
    assert "val acc fused" in table.attrs["percent_columns"]
    assert differing_settings(chosen) == ["optim.lr"]
