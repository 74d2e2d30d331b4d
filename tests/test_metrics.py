"""DICE and BCE by hand (unetcap.scoring), the metrics.json schema (unetcap.metrics), the
merged tables (unetcap.merge), and the merge's independence from TensorFlow."""

import copy
import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unetcap import UnetcapError
from unetcap.merge import METRICS_COLUMNS, flatten, merge
from unetcap.metrics import HISTORY_COLUMNS, check_metrics, read_metrics, write_history, write_metrics
from unetcap.scoring import Score, bce, dice
from unetcap.segmentations import write_run_segmentations

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE = {
    "schema": 2,
    "run": {
        "size": 1000,
        "backbone": "efficientnetb0",
        "family": "EfficientNet",
        "depth": "short",
        "lr": 0.001,
        "reg": 1e-06,
        "fold": 2,
        "repeat": 0,
        "seed": 123,
    },
    "status": "ok",
    "epochs": 23,
    "best_epoch": 18,
    "params": 10114925,
    "n_images": {"train": 640, "val": 160, "test": 200, "holdout": 300},
    "val": {"bce": 0.051, "dice": 0.812},
    "test": {"bce": 0.060, "dice": 0.797},
    "holdout": {
        "bce": 0.0575,
        "dice": 0.8,
        "patients": [
            {"patient": "P1", "pixels": 200, "intersection": 30, "total": 80, "bce_sum": 11.0},
            {"patient": "P2", "pixels": 200, "intersection": 50, "total": 120, "bce_sum": 12.0},
        ],
    },
    "seconds": {"train": 812.4, "eval": 3.1},
    "provenance": {
        "data_sha256": "ab",
        "config_sha256": "cd",
        "versions": {"tensorflow": "2.21.0", "segmentation_models": "1.0.1"},
        "device": "CPU",
        "host": "node1",
    },
}


def example(**run):
    obj = copy.deepcopy(EXAMPLE)
    obj["run"].update(run)
    return obj


# ---------------------------------------------------------------- DICE and BCE
def test_dice_of_empty_masks_and_empty_predictions_is_one():
    assert dice(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))) == 1.0
    assert dice(np.zeros((2, 4, 4)), np.full((2, 4, 4), 0.49)) == 1.0


def test_dice_of_all_zero_predictions_is_zero():
    y = np.zeros((1, 4, 4))
    y[0, 1:3, 1:3] = 1
    assert dice(y, np.zeros_like(y)) == 0.0
    # and predictions where there is no mask
    assert dice(np.zeros_like(y), y * 0.9) == 0.0


def test_dice_known_overlap_rounds_at_half():
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.5, 0.7, 0.2, 0.0])  # rounds to 1 1 0 1 0 0 (0.5 -> 0)
    # intersection 2, sum(y) 3, sum(round p) 3
    assert dice(y, p) == pytest.approx(2 * 2 / (3 + 3))


def test_dice_is_global_over_the_set_not_a_mean_of_images():
    y = np.zeros((2, 10))
    y[0, :8] = 1
    y[1, :2] = 1
    p = np.zeros((2, 10))
    p[0, :8] = 1  # image 0 perfect, image 1 missed
    assert dice(y, p) == pytest.approx(2 * 8 / (10 + 8))
    score = Score()
    score.add(y[:1], p[:1]), score.add(y[1:], p[1:])
    assert score.dice == dice(y, p)


def test_bce_by_hand_and_batched():
    y = np.array([1, 0, 1, 0], dtype=np.uint8)
    p = np.array([0.5, 0.5, 1.0, 0.0], dtype=np.float32)  # the last two are clipped to 1e-7
    expected = (2 * math.log(2) + 2 * -math.log1p(-1e-7)) / 4
    assert bce(y, p) == pytest.approx(expected, rel=1e-6)
    wrong = np.array([1, 0], dtype=np.uint8), np.array([0.0, 1.0])
    assert bce(*wrong) == pytest.approx(-math.log(1e-7), rel=1e-6)
    score = Score()
    score.add(y[:3], p[:3]), score.add(y[3:], p[3:])
    assert score.bce == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- metrics.json
def test_example_from_the_design_is_valid_and_round_trips(tmp_path):
    assert check_metrics(EXAMPLE) == []
    write_metrics(EXAMPLE, tmp_path / "metrics.json")
    assert read_metrics(tmp_path / "metrics.json") == EXAMPLE
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "path", [("run", "seed"), ("val", "dice"), ("provenance", "host"), ("status",), ("n_images", "test")]
)
def test_every_field_is_required(tmp_path, path):
    obj = copy.deepcopy(EXAMPLE)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    (tmp_path / "metrics.json").write_text(json.dumps(obj))
    with pytest.raises(UnetcapError, match="missing field " + ".".join(path)) as err:
        read_metrics(tmp_path / "metrics.json")
    assert str(tmp_path / "metrics.json") in str(err.value)


def test_wrong_types_and_status_are_refused():
    obj = copy.deepcopy(EXAMPLE)
    obj["run"]["fold"] = "2"
    obj["status"] = "crashed"
    obj["epochs"] = True
    problems = " ".join(check_metrics(obj))
    assert "run.fold" in problems and "status" in problems and "epochs" in problems


def test_nan_metrics_are_written_as_null(tmp_path):
    obj = copy.deepcopy(EXAMPLE)
    obj["status"] = "diverged"
    obj["test"]["bce"] = float("nan")
    write_metrics(obj, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["test"]["bce"] is None
    assert read_metrics(tmp_path / "m.json")["test"]["bce"] is None


def test_flatten_gives_the_contract_columns_in_order():
    row = flatten(EXAMPLE)
    assert list(row)[: len(METRICS_COLUMNS)] == METRICS_COLUMNS
    assert row["val_dice"] == 0.812 and row["n_images_test"] == 200
    assert row["provenance_versions_tensorflow"] == "2.21.0"


# ---------------------------------------------------------------- merge
def write_run(root, obj, epochs=2):
    run = obj["run"]
    folder = root / f"size{run['size']}" / run["backbone"] / f"lr{run['lr']!r}_reg{run['reg']!r}" / f"fold{run['fold']}"
    write_metrics(obj, folder / "metrics.json")
    write_history(
        [
            {
                "epoch": e,
                "loss": 1.0 / e,
                "val_loss": 1.1 / e,
                "val_dice": 0.1 * e,
                "lr": run["lr"],
                "seconds": 1.5,
                "val_bce": 0.9 / e,
            }
            for e in range(1, epochs + 1)
        ],
        folder / "history.csv",
    )
    return folder / "metrics.json", folder / "history.csv"


def merged_paths(tmp_path) -> tuple:
    return tmp_path / "metrics.csv", tmp_path / "histories.csv", tmp_path / "holdout.csv"


def test_merge_one_row_per_run_and_histories_with_run_columns(tmp_path):
    paths = [write_run(tmp_path, example(fold=f, size=s), epochs=f + 1) for s in (500, 200) for f in (1, 0)]
    merge([m for m, _ in paths], [h for _, h in paths], *merged_paths(tmp_path))
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table.columns[: len(METRICS_COLUMNS)]) == METRICS_COLUMNS
    assert list(zip(table["size"], table["fold"])) == [(200, 0), (200, 1), (500, 0), (500, 1)]
    assert "holdout_patients" not in table.columns and table["holdout_dice"].tolist() == [0.8] * 4
    histories = pd.read_csv(tmp_path / "histories.csv")
    epoch_columns = [c if c != "lr" else "epoch_lr" for c in HISTORY_COLUMNS]
    run_columns = ["size", "backbone", "family", "depth", "lr", "reg", "fold", "repeat"]
    assert list(histories.columns) == run_columns + epoch_columns
    assert len(histories) == 2 * (1 + 2)
    assert histories.query("size == 200 and fold == 1")["epoch"].tolist() == [1, 2]


def test_merge_writes_each_runs_holdout_counts_per_patient(tmp_path):
    """holdout.csv: one row per run and holdout patient, the counts that give the run's
    holdout DICE again when summed (what the sample-size analysis resamples)."""
    paths = [write_run(tmp_path, example(fold=f, size=200)) for f in (1, 0)]
    merge([m for m, _ in paths], [h for _, h in paths], *merged_paths(tmp_path))
    holdout = pd.read_csv(tmp_path / "holdout.csv")
    assert holdout.columns.tolist()[-6:] == ["repeat", "patient", "pixels", "intersection", "total", "bce_sum"]
    assert list(zip(holdout["fold"], holdout["patient"])) == [(0, "P1"), (0, "P2"), (1, "P1"), (1, "P2")]
    one = holdout[holdout["fold"] == 0]
    assert 2 * one["intersection"].sum() / one["total"].sum() == pytest.approx(EXAMPLE["holdout"]["dice"])
    assert one["bce_sum"].sum() / one["pixels"].sum() == pytest.approx(EXAMPLE["holdout"]["bce"])


def test_merge_refuses_a_missing_field_and_another_schema_naming_the_files(tmp_path):
    good = write_run(tmp_path, example(fold=0))
    bad_missing, bad_schema = write_run(tmp_path, example(fold=1)), write_run(tmp_path, example(fold=2))
    obj = json.loads(bad_missing[0].read_text())
    obj["test"].pop("dice", None)
    bad_missing[0].write_text(json.dumps(obj))
    obj = json.loads(bad_schema[0].read_text())
    obj["schema"] = 1
    bad_schema[0].write_text(json.dumps(obj))
    runs = [good, bad_missing, bad_schema]
    with pytest.raises(UnetcapError) as err:
        merge([m for m, _ in runs], [h for _, h in runs], *merged_paths(tmp_path))
    message = str(err.value)
    assert f"{bad_missing[0]}: missing field test.dice" in message
    assert f"{bad_schema[0]}: schema 1" in message
    assert str(good[0]) not in message
    assert not any(path.exists() for path in merged_paths(tmp_path))


def test_merge_refuses_a_history_without_its_columns(tmp_path):
    m, h = write_run(tmp_path, example())
    h.write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(UnetcapError, match=f"{h}: history.csv lacks the columns"):
        merge([m], [h], *merged_paths(tmp_path))


# ---------------------------------------------------------------- the merge without TensorFlow
def env_packages(name: str) -> set[str]:
    """The pip packages of envs/<name>.yaml, normalised (tf_keras -> tf-keras)."""
    spec = yaml.safe_load((ROOT / "envs" / f"{name}.yaml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return {re.sub(r"[-_.]+", "-", r.split("==")[0]).lower() for r in pip}


def modules_outside_the_analysis_env() -> set[str]:
    """Top-level modules of the packages that the other environments have and the analysis
    environment lacks (TensorFlow, segmentation-models, OpenCV, pydicom, ...)."""
    missing = (env_packages("train") | env_packages("cohort")) - env_packages("analysis")
    modules = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            dist = re.sub(r"[-_.]+", "-", dist).lower()
            if dist in missing or dist.removesuffix("-cpu") in missing:  # tensorflow-cpu here
                modules.add(module)
    return modules


# Runs the rule's script as Snakemake would, with those modules made unimportable, and
# prints the modules it loaded.
MERGE_WITHOUT = """
import json, runpy, sys, types
blocked, args = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is not in the analysis environment")

sys.meta_path.insert(0, Blocked())
snakemake = types.SimpleNamespace(input=types.SimpleNamespace(**args["input"]),
                                  output=types.SimpleNamespace(**args["output"]), log=[args["log"]])
runpy.run_path(args["script"], init_globals={"snakemake": snakemake})
print(json.dumps(sorted(sys.modules)))
"""


def test_the_merge_rule_runs_without_tensorflow_or_the_cohort_readers(tmp_path):
    """The `merge` rule's script, on two runs and a store, in a process where nothing of the
    train or cohort environments can be imported (the analysis environment's view)."""
    from tiny_store import write_tiny_store

    rule = (ROOT / "workflow" / "rules" / "merge.smk").read_text()
    assert re.search(r'rule merge:.*?conda:\s*"\.\./\.\./envs/analysis\.yaml"', rule, flags=re.DOTALL), rule
    blocked = modules_outside_the_analysis_env()
    assert {"tensorflow", "segmentation_models", "cv2", "pydicom"} <= blocked, blocked
    store = write_tiny_store(tmp_path / "work")
    masks = np.load(store["masks"])
    runs = [write_run(tmp_path / "runs", example(fold=f, size=store["size"])) for f in (0, 1)]
    segmentations = []
    for metrics_path, _ in runs:
        segmentations.append(metrics_path.parent / "segmentations.npz")
        write_run_segmentations(segmentations[-1], [20, 21], masks[[20, 21]], masks[[20, 21]] * 0.9)
    out = tmp_path / "results"
    args = {
        "script": str(ROOT / "workflow" / "scripts" / "merge.py"),
        "input": {
            "metrics": [str(m) for m, _ in runs],
            "histories": [str(h) for _, h in runs],
            "segmentations": [str(p) for p in segmentations],
            "store": str(store["store"]),
        },
        "output": {
            name: str(out / f"{name}.{ext}")
            for name, ext in (("metrics", "csv"), ("histories", "csv"), ("holdout", "csv"), ("segmentations", "npz"))
        },
        "log": str(tmp_path / "merge.log"),
    }
    result = subprocess.run(
        [sys.executable, "-c", MERGE_WITHOUT, json.dumps(sorted(blocked)), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # as common.smk sets it
    log = (tmp_path / "merge.log").read_text() if (tmp_path / "merge.log").exists() else ""
    assert result.returncode == 0, result.stderr[-3000:] + log[-3000:]
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}
    assert not loaded & blocked, loaded & blocked
    assert "unetcap.train" not in json.loads(result.stdout.splitlines()[-1])
    assert len(pd.read_csv(out / "metrics.csv")) == 2
    with np.load(out / "segmentations.npz") as merged:
        assert merged["image_rows"].tolist() == [20, 21] and merged["fold"].tolist() == [0, 1]


def test_training_does_not_import_the_merge():
    """Training scores with unetcap.scoring and writes its files with unetcap.metrics; the
    merge stage (unetcap.merge) comes after it and is not imported by it."""
    code = "import sys, unetcap.train; print(sorted(m for m in sys.modules if m.startswith('unetcap')))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = result.stdout.strip()
    assert "'unetcap.scoring'" in loaded and "'unetcap.train.run'" in loaded, loaded
    assert "'unetcap.merge'" not in loaded, loaded
