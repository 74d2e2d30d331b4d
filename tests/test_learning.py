"""Networks that learn: one encoder on a tiny phantom cohort, at the demo's settings (its
crop, resolution, loss, BatchNorm momentum, epoch length and augmentation, read from
config/demo.yaml), must segment the myocardium of patients it never saw. Fails when any
part of the chain that makes learning possible breaks (the crop, the store, the loss, the
loop, the restored weights, the scoring). About 90 s on 2 cores."""

import pytest
import yaml
from snakemake_run import ROOT
from tiny_store import TF_THREADS

from unetcap import train
from unetcap.cohort import write_sample
from unetcap.phantom import write_cohort
from unetcap.prepare import prepare_store, store_paths
from unetcap.splits import write_manifest

DEMO = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
SIZE = 100


@pytest.fixture(scope="module")
def demo_like_study(tmp_path_factory):
    """8 phantom patients with the demo's images per patient, prepared as the demo prepares them."""
    root = tmp_path_factory.mktemp("learning")
    per_patient = DEMO["images_per_patient"]
    write_cohort(root / "phantom", 8, 5, slices=(4, 5), phases=(6, 8), matrix=(96, 128))
    write_sample(root / "phantom", root / "sample.csv", per_patient)
    prepare_store(root / "sample.csv", *store_paths(root / "prepared"), DEMO["image_size"], workers=2, roi=DEMO["roi"])
    write_manifest(
        root / "sample.csv",
        root / f"size{SIZE}.json",
        size=SIZE,
        folds=DEMO["folds"],
        seed=DEMO["seed"],
        images_per_patient=per_patient,
        holdout_fraction=DEMO["holdout_fraction"],
    )
    return root


@pytest.mark.slow
def test_an_encoder_at_the_demos_settings_learns_the_myocardium(demo_like_study):
    root = demo_like_study
    settings = {**DEMO["train"], "threads": TF_THREADS, "checkpoint_every": 0}
    metrics = train.train_run(
        root / "prepared/images.npy",
        root / "prepared/masks.npy",
        root / "prepared/store.json",
        root / f"size{SIZE}.json",
        root / "run/metrics.json",
        root / "run/history.csv",
        size=SIZE,
        backbone="resnet18",
        lr=DEMO["lrs"][0],
        reg=DEMO["regs"][0],
        fold=0,
        seed=DEMO["seed"],
        **settings,
    )
    assert metrics["status"] == "ok"
    # the default precision, recorded (tests/test_precision.py: the others learn too)
    assert (metrics["train"]["precision"], metrics["train"]["jit"]) == ("float32", False)
    assert metrics["train"]["steps"] == DEMO["train"]["steps_per_epoch"] * DEMO["train"]["max_epochs"]
    assert metrics["val"]["dice"] >= 0.5, metrics["val"]
    assert metrics["test"]["dice"] >= 0.5, metrics["test"]
