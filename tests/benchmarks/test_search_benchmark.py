"""benchmarks/search.py: a table from real fine-tunes, and deterministic replays against tables.

The replay tests use a table literal (made by `_table` below, no training), so the expected
compute and ratios can be worked out independently of the code under test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SST2 = REPO.parent / "shared" / "data" / "sst2"
sys.path.insert(0, str(REPO / "benchmarks"))

import _search_replay as rp  # noqa: E402
import _search_table as tb  # noqa: E402

_spec = importlib.util.spec_from_file_location("search_benchmark", REPO / "benchmarks/search.py")
assert _spec is not None and _spec.loader is not None
search = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(search)

SECONDS = {("nano", 16): 2.0, ("nano", 32): 1.0, ("micro", 16): 8.0, ("micro", 32): 4.0}


def _loss(size: str, batch: int, lr_index: int, epoch: int) -> float:
    """A made-up but plausible landscape: micro beats nano, the middle lr is best, later epochs
    help, and the best configurations overfit a little in epoch 4."""
    gain = {"nano": 0.08, "micro": 0.15}[size] * (1.0 - 0.4 * abs(lr_index - 1))
    gain *= 1.0 if batch == 16 else 0.9
    loss = 0.70 - gain * (1 - math.exp(-epoch / 1.5))
    if epoch == 4 and lr_index == 1:
        loss += 0.01
    return round(loss + 0.001 * lr_index, 6)


def _table(complete: bool = True) -> dict:
    spec = tb.TableSpec(
        data_dir=Path("/nowhere"), model_sizes=("nano", "micro"), batch_sizes=(16, 32), n_lrs=3
    )
    rows = []
    for size, batch, lr in spec.configs():
        i = spec.learning_rates().index(lr)
        epochs = [
            {
                "epoch": e,
                "train_loss": 0.5,
                "val_loss": _loss(size, batch, i, e),
                "val_accuracy": 0.5 + (0.7 - _loss(size, batch, i, e)),
                "seconds": SECONDS[size, batch],
            }
            for e in range(1, 5)
        ]
        row = {"model_size": size, "batch_size": batch, "learning_rate": lr}
        rows.append({**row, "end_reason": "complete", "seconds": 4 * SECONDS[size, batch]})
        rows[-1]["epochs"] = epochs
    made = {"device": "literal", **spec.settings()}
    return {
        "format": tb.FORMAT,
        "made": made,
        "grid": spec.grid(),
        "rows": rows if complete else rows[:5],
    }


def _full_seconds(t: rp.TrialRecord) -> float:
    return SECONDS[t.model_size, t.batch_size] * t.epochs


def test_defaults_are_the_space_of_the_sst2_study() -> None:
    from sweep.config import load_study

    study = load_study(REPO / "studies" / "sst2.yaml")
    p = study.parameters
    assert (p["learning_rate"].min, p["learning_rate"].max, p["learning_rate"].log) == (
        *tb.LR_RANGE,
        True,
    )
    assert p["batch_size"].values == tb.BATCH_SIZES
    assert p["model_size"].values == tb.MODEL_SIZES
    assert study.max_epochs() == tb.MAX_EPOCHS
    assert (p["weight_decay"].value, p["warmup_ratio"].value) == (tb.WEIGHT_DECAY, tb.WARMUP_RATIO)
    assert study.data.max_length == tb.MAX_LENGTH


def test_learning_rates_are_bin_centres_and_snap_to_their_bin() -> None:
    grid = tb.TableSpec(data_dir=Path("."), n_lrs=4).grid()
    lrs = grid["learning_rate"]
    assert lrs == sorted(lrs) and len(lrs) == 4 and tb.LR_RANGE[0] < lrs[0] < lrs[-1] < 3e-3
    assert [tb.snap_lr(lr, grid) for lr in lrs] == lrs
    assert tb.snap_lr(1.0e-4, grid) == lrs[0] and tb.snap_lr(3.0e-3, grid) == lrs[-1]
    # Equal log-width bins: the geometric midpoint of two neighbours separates them.
    edge = math.sqrt(lrs[1] * lrs[2])
    assert tb.snap_lr(edge * 0.99, grid) == lrs[1] and tb.snap_lr(edge * 1.01, grid) == lrs[2]


def test_build_table_runs_real_fine_tunes_and_resumes(tmp_path: Path, shared_cache: Path) -> None:
    spec = tb.TableSpec(
        data_dir=SST2,
        limit_train=160,
        max_length=32,
        model_sizes=("nano",),
        batch_sizes=(32,),
        n_lrs=2,
        epochs=2,
    )
    path = tmp_path / "table.json"
    lines: list[str] = []
    # Stopped after one of the two configurations, as an interrupted build would be.
    tb.build_table(path, spec, device="cpu", cache_dir=shared_cache, max_new=1, log=lines.append)
    first = tb.load_table(path)
    assert len(first["rows"]) == 1 and tb.missing_configs(first) == [
        ("nano", 32, spec.learning_rates()[1])
    ]
    made = first["made"]
    assert made["data"] == str(SST2.resolve()) and len(made["content_hash"]) == 64
    assert (made["train_rows"], made["validation_rows"], made["limit_train"]) == (160, 872, 160)
    assert made["device"].startswith("cpu (") and made["versions"]["torch"]
    assert made["max_length"] == 32 and made["started"] <= made["updated"]
    row = first["rows"][0]
    assert (row["model_size"], row["batch_size"], row["learning_rate"]) == (
        "nano",
        32,
        spec.learning_rates()[0],
    )
    assert row["end_reason"] == "complete" and row["n_params"] > 0
    assert [e["epoch"] for e in row["epochs"]] == [1, 2]
    for e in row["epochs"]:
        assert 0.0 < e["val_loss"] < 5.0 and 0.0 <= e["val_accuracy"] <= 1.0
        assert e["seconds"] > 0.0
    assert sum(e["seconds"] for e in row["epochs"]) <= row["seconds"]

    # Resumed: the row already there is kept as it was, only the missing one is trained.
    table = tb.build_table(path, spec, device="cpu", cache_dir=shared_cache, log=lines.append)
    assert table == tb.load_table(path)
    assert len(table["rows"]) == 2 and table["rows"][0] == row
    assert tb.missing_configs(table) == []
    assert table["rows"][1]["learning_rate"] == spec.learning_rates()[1]

    # A batch size added to the grid: only its configurations are trained.
    wider = dataclasses.replace(spec, batch_sizes=(32, 16))
    table = tb.build_table(path, wider, device="cpu", cache_dir=shared_cache, log=lines.append)
    assert table["grid"]["batch_size"] == [32, 16] and table["rows"][0] == row
    assert [r["batch_size"] for r in table["rows"]] == [32, 32, 16, 16]
    with pytest.raises(tb.TableError, match="another grid"):
        tb.build_table(path, dataclasses.replace(spec, n_lrs=3), device="cpu", log=lines.append)

    # Rows made from other data settings cannot be mixed in.
    other = dataclasses.replace(spec, limit_train=200)
    with pytest.raises(tb.TableError, match="limit_train"):
        tb.build_table(path, other, device="cpu", cache_dir=shared_cache, log=lines.append)


def test_replay_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    table = _table()
    first = rp.replay(table, "default", seed=0, n_trials=30)
    assert first == rp.replay(table, "default", seed=0, n_trials=30)
    assert first.trials != rp.replay(table, "default", seed=1, n_trials=30).trials
    random0 = rp.replay(table, "random", seed=0, n_trials=30)
    assert random0 == rp.replay(table, "random", seed=0, n_trials=30)
    assert random0.trials != rp.replay(table, "random", seed=1, n_trials=30).trials
    assert len(first.trials) == 30 and {t.learning_rate for t in first.trials} <= set(
        table["grid"]["learning_rate"]
    )


def test_every_side_draws_its_own_configurations() -> None:
    # Sides that shared a seed would share draws: TPE's first trials would be random search's
    # first trials, and random sampling with Hyperband would be random search pruned.
    table = _table()
    drawn = {
        side: tuple(
            (t.model_size, t.batch_size, t.learning_rate, t.epochs)
            for t in rp.replay(table, side, seed=0, n_trials=10).trials
        )
        for side in rp.SIDES
    }
    assert len(set(drawn.values())) == len(rp.SIDES)
    seeds = {rp.side_seed(seed, side) for seed in range(3) for side in rp.SIDES}
    assert len(seeds) == 3 * len(rp.SIDES)


def test_a_finite_space_replays_no_configuration_twice() -> None:
    # --lr-values: 2 sizes x 2 batch sizes x 3 learning rates x 4 epochs = 48 configurations.
    table = _table()
    for side in ("default", "random"):
        run = rp.replay(table, side, seed=0, n_trials=30, lr_values=True)
        # A pruned configuration may come back (in a bracket that lets it train longer).
        ran = [
            (t.model_size, t.batch_size, t.learning_rate, t.epochs)
            for t in run.trials
            if t.state != "pruned"
        ]
        assert len(ran) == len(set(ran)) > 10
    # The range, as before: TPE repeats what the grid snaps together.
    run = rp.replay(table, "default", seed=0, n_trials=30)
    ran = [(t.model_size, t.batch_size, t.learning_rate, t.epochs) for t in run.trials]
    assert len(set(ran)) < len(ran)


def test_pruner_option_replaces_the_default_sides_pruner() -> None:
    table = _table()
    for side in ("default", "random_hyperband"):
        unpruned = rp.replay(table, side, seed=0, n_trials=30, pruner="none")
        assert all(t.state == "complete" for t in unpruned.trials)
        asha = rp.replay(table, side, seed=0, n_trials=30, pruner="successive_halving")
        assert any(t.state == "pruned" for t in asha.trials)
    # The baseline never prunes.
    baseline = rp.replay(table, "random", seed=0, n_trials=30, pruner="successive_halving")
    assert baseline == rp.replay(table, "random", seed=0, n_trials=30)


def test_pruned_trials_cost_only_the_epochs_they_ran() -> None:
    table = _table()
    pruned = []
    for seed in range(3):
        run = rp.replay(table, "default", seed=seed, n_trials=30)
        total = 0.0
        for t in run.trials:
            ran = SECONDS[t.model_size, t.batch_size] * t.epochs_run
            assert t.seconds == pytest.approx(ran)
            total += t.seconds
            assert t.cumulative_seconds == pytest.approx(total)
            if t.state == "pruned":
                pruned.append(t)
                assert t.epochs_run < t.epochs and t.seconds < _full_seconds(t)
                assert t.value is None
            else:
                assert t.state == "complete" and t.epochs_run == t.epochs
    assert pruned, "Hyperband pruned nothing in 90 trials"
    # Random search without pruning runs every trial to its end.
    run = rp.replay(table, "random", seed=0, n_trials=30)
    assert all(t.state == "complete" and t.seconds == _full_seconds(t) for t in run.trials)


def test_complete_trial_value_is_the_best_epoch_it_ran() -> None:
    table = _table()
    lrs = table["grid"]["learning_rate"]
    for t in rp.replay(table, "random", seed=2, n_trials=20).trials:
        losses = [
            _loss(t.model_size, t.batch_size, lrs.index(t.learning_rate), e) for e in (1, 2, 3, 4)
        ]
        assert t.value == min(losses[: t.epochs])


def _record(number: int, value: float | None, seconds: float, cumulative: float) -> rp.TrialRecord:
    return rp.TrialRecord(
        number=number,
        model_size="nano",
        batch_size=16,
        learning_rate=1e-3,
        epochs=2,
        epochs_run=2 if value is not None else 1,
        state="complete" if value is not None else "pruned",
        value=value,
        val_accuracy=None,
        seconds=seconds,
        cumulative_seconds=cumulative,
    )


def test_time_to_target_ratio_arithmetic() -> None:
    # Random: best 0.50, reached in its 2nd trial, 40 s in all.
    random = rp.SideRun(
        "random", 0, (_record(0, 0.60, 10, 10), _record(1, 0.50, 20, 30), _record(2, 0.55, 10, 40))
    )
    # Default: a pruned trial (3 s), 0.52 at 7 s, 0.49 (better than the target) at 12 s.
    steps = (_record(0, None, 3, 3), _record(1, 0.52, 4, 7))
    steps += (_record(2, 0.49, 5, 12), _record(3, 0.45, 5, 17))
    default = rp.SideRun("default", 0, steps)
    seed0 = rp.compare(default, random)
    assert seed0["target"] == 0.50 and seed0["default_seconds_to_target"] == 12
    assert seed0["time_to_target_ratio"] == pytest.approx(12 / 40)
    assert seed0["default_best"] == 0.45 and seed0["random_best"] == 0.50
    assert seed0["default_pruned"] == 1
    assert seed0["default_best_so_far"] == [[7, 0.52], [12, 0.49], [17, 0.45]]
    assert seed0["random_best_so_far"] == [[10, 0.60], [30, 0.50]]

    # Seed 1: the default reaches the target exactly (a tie counts) at 20 s of random's 50 s.
    random1 = rp.SideRun("random", 1, (_record(0, 0.40, 50, 50),))
    default1 = rp.SideRun("default", 1, (_record(0, 0.41, 10, 10), _record(1, 0.40, 10, 20)))
    both = rp.summarize([seed0, rp.compare(default1, random1)])
    assert both["time_to_target_ratio"] == pytest.approx((12 / 40 + 20 / 50) / 2)
    assert both["seeds_reached"] == "2/2"
    assert both["compute_ratio"] == pytest.approx(((17 + 20) / 2) / ((40 + 50) / 2))

    # Seed 2: never reached. The mean is then undefined; the bound counts all it spent.
    default2 = rp.SideRun("default", 2, (_record(0, 0.45, 10, 10),))
    seed2 = rp.compare(default2, random1)
    assert seed2["time_to_target_ratio"] is None and seed2["ratio_lower_bound"] == 10 / 50
    three = rp.summarize([seed0, rp.compare(default1, random1), seed2])
    assert three["time_to_target_ratio"] is None and three["seeds_reached"] == "2/3"
    assert three["time_to_target_ratio_lower_bound"] == pytest.approx((0.3 + 0.4 + 0.2) / 3)


def test_cli_replay_prints_the_ratio_of_the_replayed_sweeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table()
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    curves = tmp_path / "curves.json"
    argv = ["--table", str(path), "--seeds", "2", "--trials", "25", "--curves", str(curves)]
    assert search.main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["trials"] == 25 and out["seeds"] == 2 and len(out["per_seed"]) == 2
    # Recomputed here from the written trials and the table literal.
    trials = json.loads(curves.read_text())
    ratios = []
    for seed in ("0", "1"):
        random, default = trials[seed]["random"], trials[seed]["default"]
        assert len(random) == len(default) == 25
        target = min(t["value"] for t in random)
        random_seconds = sum(
            SECONDS[t["model_size"], t["batch_size"]] * t["epochs"] for t in random
        )
        spent, reached = 0.0, None
        for t in default:
            spent += SECONDS[t["model_size"], t["batch_size"]] * t["epochs_run"]
            if t["state"] == "complete" and t["value"] <= target:
                reached = spent
                break
        ratio = None if reached is None else reached / random_seconds
        got = out["per_seed"][int(seed)]["time_to_target_ratio"]
        assert got == ratio if ratio is None else got == pytest.approx(ratio)
        assert out["per_seed"][int(seed)]["random_best"] == target
        ratios.append(ratio)
    if None in ratios:
        assert out["time_to_target_ratio"] is None
    else:
        assert out["time_to_target_ratio"] == pytest.approx(sum(ratios) / 2)
    # The third side samples at random and prunes with the default Hyperband.
    for seed in ("0", "1"):
        side = trials[seed]["random_hyperband"]
        assert len(side) == 25 and {t["state"] for t in side} <= {"complete", "pruned"}
        random_seconds = sum(
            SECONDS[t["model_size"], t["batch_size"]] * t["epochs"] for t in trials[seed]["random"]
        )
        assert sum(t["seconds"] for t in side) == pytest.approx(
            sum(SECONDS[t["model_size"], t["batch_size"]] * t["epochs_run"] for t in side)
        )
        summary = out["random_hyperband"]
        assert summary["random_hyperband_seconds"] >= 0 and "per_seed_ratio" in summary
        ratio = summary["per_seed_ratio"][int(seed)]
        assert ratio is None or 0 < ratio <= sum(t["seconds"] for t in side) / random_seconds
        # The fourth runs random search again with its own seed: every trial to its end.
        rerun = trials[seed]["random_rerun"]
        assert len(rerun) == 25 and all(t["epochs_run"] == t["epochs"] for t in rerun)
        assert rerun != trials[seed]["random"]
        ratio = out["random_rerun"]["per_seed_ratio"][int(seed)]
        assert ratio is None or 0 < ratio <= sum(t["seconds"] for t in rerun) / random_seconds
    assert out["table_best"]["val_loss"] == min(
        e["val_loss"] for r in table["rows"] for e in r["epochs"]
    )
    # --first-seed replays a later range of seeds: seed 1 alone is seed 1 of the run above.
    argv = ["--table", str(path), "--first-seed", "1", "--seeds", "1", "--trials", "25"]
    assert search.main(argv) == 0
    alone = json.loads(capsys.readouterr().out.strip())
    assert alone["first_seed"] == 1 and alone["per_seed"] == out["per_seed"][1:]


def test_cli_without_a_table_says_how_to_build_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert search.main(["--table", str(missing), "--limit-train", "500"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no search table at")
    assert f"--build-table {missing}" in err and "--limit-train 500" in err

    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(_table(complete=False)))
    assert search.main(["--table", str(partial)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "5 of 12 configurations" in err


def test_the_shipped_table_is_complete_and_replays_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The GPU-made SST-2 table in benchmarks/tables/ belongs to ../shared/data/sst2 and is what
    the issue's command replays on a machine that never built one."""
    from sweep.config import DataConfig
    from sweep.data import text_data

    monkeypatch.setenv("SWEEP_CACHE_DIR", str(tmp_path))  # nothing built here
    shipped = REPO / "benchmarks" / "tables" / "search-sst2-limit8000-len64.json"
    table = tb.load_table(shipped)
    assert tb.missing_configs(table) == [] and len(table["rows"]) == 36
    assert table["made"]["device"].startswith("cuda")
    assert all(len(r["epochs"]) == 4 and r["end_reason"] == "complete" for r in table["rows"])
    if SST2.is_dir():
        spec = DataConfig(
            train=SST2 / "train.csv",
            validation=SST2 / "validation.csv",
            max_length=64,
            limit_train=8000,
            split_seed=0,
        )
        assert text_data(spec).content_hash == table["made"]["content_hash"]

    argv = ["--data", str(SST2), "--limit-train", "8000", "--seeds", "1", "--trials", "12"]
    assert search.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["table"]) == shipped
    assert out["table_best"]["val_loss"] == min(
        e["val_loss"] for r in table["rows"] for e in r["epochs"]
    )


def test_seed_noise_trains_each_configuration_once_per_seed(
    tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("seed_noise", REPO / "benchmarks/seed_noise.py")
    assert spec is not None and spec.loader is not None
    seed_noise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_noise)
    out_dir = tmp_path / "noise"
    argv = ["--data", str(SST2), "--limit-train", "160", "--lrs", "1", "--epochs", "1"]
    argv += ["--seeds", "2", "--device", "cpu", "--out", str(out_dir)]
    argv += ["--cache-dir", str(shared_cache)]
    assert seed_noise.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    tables = [tb.load_table(out_dir / f"seed{s}.json") for s in (0, 1)]
    assert [t["made"]["seed"] for t in tables] == [0, 1]
    losses = [t["rows"][0]["epochs"][0]["val_loss"] for t in tables]
    assert losses[0] != losses[1], "two training seeds gave the same model"
    (config,) = out["configs"].values()
    assert config["val_loss"] == [round(v, 4) for v in losses]
    assert config["range"] == pytest.approx(abs(losses[0] - losses[1]))
    assert config["std"] == pytest.approx(abs(losses[0] - losses[1]) / math.sqrt(2))
    shipped = tb.load_table(REPO / "benchmarks" / "tables" / "search-sst2-limit8000-len64.json")
    best = sorted(min(e["val_loss"] for e in r["epochs"]) for r in shipped["rows"])
    assert out["shipped_table_top10_span"] == pytest.approx(best[9] - best[0])
