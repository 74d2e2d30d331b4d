"""Why the U-Nets stayed at DICE 0, measured: the experiments behind docs/learning.md.

    .venv/bin/python benchmarks/learning.py [pixels] [curves] [schedule] [pilot] [--steps N] [--out DIR]

`pixels`: the myocardium's share of the pixels at 32, 64 and 128 px, whole image against
the heart-centred crop, on the demo's phantom cohort; the patients a subset trains on.
`figures`: redraw the curves' figure from curves.csv.
`curves`: one encoder (resnet18) at the demo's resolution, trained on one fold of one
subset, scored every few optimizer steps: validation and test DICE with the model in
inference mode (BatchNorm's moving statistics: what the study reports) and in training mode
(the batch's own statistics), the largest predicted probability, and the best DICE any
threshold would give. Once with the paper's protocol, then with each remedy alone, then
with all of them. Writes CSV tables and figures to docs/learning/ (or --out) and prints
the tables. Uses the library's own pieces (phantom, cohort, prepare, splits, train), not
Snakemake; the data goes to benchmarks/out/learning/ (generated, not in git).
`schedule`: one encoder's holdout DICE against dataset size under a fixed number of optimizer
steps (the demo's 100) and under early stopping with a floor and a cap (config/learning_curve.yaml),
with the steps and seconds each took, from two studies' merged tables: results/learning_curve/
and results/learning_curve_fixed/ (config/learning_curve_fixed.yaml laid over it; the command
is printed when one is missing). Writes schedule.csv.
`pilot`: the sample-size analysis of a pilot whose labels stop at 480 images
(config/learning_curve_pilot.yaml laid over config/learning_curve.yaml) forecasts the full
study's 600 and 1,200 images: every curve family with its band, the paper's OLS and the
last size carried forward, against the full study's observed means, which no fit sees.
Writes pilot.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import train
from unetcap.cohort import write_sample
from unetcap.phantom import write_cohort
from unetcap.prepare import prepare_store, store_paths
from unetcap.scoring import dice
from unetcap.splits import plan_subset, write_manifest

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT / "benchmarks" / "out" / "learning"
# The demo's cohort (config/demo.yaml): the phantom, its seed and shape.
COHORT = {"patients": 12, "seed": 2021, "slices": (8, 10), "phases": (18, 20), "matrix": (138, 192)}
SEED, FOLDS, PER_PATIENT = 123, 2, 20  # as config/demo.yaml
BACKBONE = "resnet18"
IMAGE_SIZE = 64
SIZE = 200  # the demo's larger size: 4 training patients per fold
THREADS = 1  # as a demo job
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)

# The variants: the paper's protocol, each remedy alone, all together (config/demo.yaml).
PAPER = {"roi": "none", "loss": "bce", "momentum": 0.99, "steps": "pass", "augment": False}
VARIANTS = {
    "paper": PAPER,
    "heart crop": {**PAPER, "roi": "heart"},
    "bce+dice": {**PAPER, "loss": "bce+dice"},
    "batchnorm 0.9": {**PAPER, "momentum": 0.9},
    "batches drawn": {**PAPER, "steps": "draw"},
    "augmentation": {**PAPER, "augment": True},
    "all (demo)": {"roi": "heart", "loss": "bce+dice", "momentum": 0.9, "steps": "draw", "augment": True},
}
ROI_FRACTION = 0.5
AUGMENT = {"flip": True, "rotate": 15.0, "intensity": 0.1}


def cohort(per_patient: int = PER_PATIENT) -> Path:
    """The demo's phantom cohort and its sample of `per_patient` images a patient (written once)."""
    sample = DATA / f"sample{per_patient}.csv"
    if not (DATA / "phantom").exists():
        write_cohort(
            DATA / "phantom",
            COHORT["patients"],
            COHORT["seed"],
            slices=COHORT["slices"],
            phases=COHORT["phases"],
            matrix=COHORT["matrix"],
        )
    if not sample.exists():
        write_sample(DATA / "phantom", sample, per_patient)
    return sample


def store(image_size: int, roi: str, per_patient: int = PER_PATIENT, fraction: float = ROI_FRACTION) -> Path:
    """A prepared store of the demo cohort (written once per size and crop)."""
    folder = DATA / f"store{per_patient}_{image_size}_{roi}{fraction if roi != 'none' else ''}"
    if not (folder / "store.json").exists():
        prepare_store(
            cohort(per_patient), *store_paths(folder), image_size, workers=2, roi={"method": roi, "fraction": fraction}
        )
    return folder


def manifest(size: int, per_patient: int = PER_PATIENT) -> Path:
    path = DATA / f"size{size}_{per_patient}.json"
    if not path.exists():
        write_manifest(
            cohort(per_patient),
            path,
            size=size,
            folds=FOLDS,
            seed=SEED,
            images_per_patient=per_patient,
            holdout_fraction=0.2,
        )
    return path


# ---------------------------------------------------------------- pixels and patients
def pixel_shares() -> pd.DataFrame:
    """Share of myocardium pixels (over all images, and over images that have some), and
    the wall's median thickness in pixels (area over half the perimeter), per size and crop."""
    import cv2

    rows = []
    for size in (32, 64, 128):
        for roi in ("none", "heart"):
            masks = np.load(store(size, roi) / "masks.npy")
            some = masks.reshape(len(masks), -1).max(axis=1) > 0
            thickness = []
            for m in masks[some]:
                contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
                perimeter = sum(cv2.arcLength(c, True) for c in contours)
                thickness.append(2 * m.sum() / perimeter if perimeter else 0.0)
            rows.append(
                {
                    "image_size": size,
                    "roi": roi,
                    "myocardium_share": masks.mean(),
                    "share_where_present": masks[some].mean(),
                    "images_with_myocardium": some.mean(),
                    "wall_px": float(np.median(thickness)),
                }
            )
    return pd.DataFrame(rows)


def subset_patients(sizes=(50, 100, 200, 400, 1000), folds=FOLDS, per_patient: int = PER_PATIENT) -> pd.DataFrame:
    """How many patients each fold's model trains on, per dataset size."""
    rows = []
    for size in sizes:
        plan = plan_subset(size, folds, per_patient, 0.2)
        rows.append(
            {
                "size": size,
                "dev_patients": plan.dev_patients,
                "train_patients_per_fold": plan.dev_patients - plan.dev_patients // folds,
                "train_images": plan.dev_images - plan.dev_images // folds,
                "test_patients": plan.test_patients,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- DICE against steps
def curve(
    name: str,
    variant: dict,
    total_steps: int,
    every: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    reg: float = 1e-6,
    fold: int = 0,
    backbone: str = BACKBONE,
    image_size: int = IMAGE_SIZE,
    size: int = SIZE,
    per_patient: int = PER_PATIENT,
    fraction: float = ROI_FRACTION,
) -> pd.DataFrame:
    """Train `backbone` on fold `fold` of size `size` with `variant`, scoring every `every` steps."""
    folder = store(image_size, variant["roi"], per_patient, fraction)
    data = train.load_run_data(
        folder / "images.npy", folder / "masks.npy", folder / "store.json", manifest(size, per_patient), size, fold
    )
    settings = train.Settings.from_config(
        batch_size=batch_size,
        loss=variant["loss"],
        augment=AUGMENT if variant["augment"] else {},
        threads=THREADS,
        batchnorm_momentum=variant["momentum"],
    )
    seed = train.run_seed(SEED, size, backbone, lr, reg, fold)
    net = train.build_network(backbone, image_size, lr, reg, seed, settings)
    model, step_fn, predict = net.model, net.train_step, net.predict
    import tensorflow as tf

    train_mode = tf.function(
        lambda x: model(x, training=True),
        autograph=False,
        input_signature=[tf.TensorSpec((None, image_size, image_size, 1), tf.float32)],
    )
    n, rows, step, epoch = len(data.x_train), [], 0, 0
    epoch_steps = -(-n // batch_size)
    t0 = time.perf_counter()
    while step < total_steps:
        epoch += 1
        rng = np.random.default_rng([seed, epoch])
        batches = train.epoch_batches(n, batch_size, every if variant["steps"] == "draw" else 0, rng)
        augment = np.random.default_rng([seed, epoch, 1]) if variant["augment"] else None
        for idx in batches:
            x, y = data.x_train[idx], data.y_train[idx]
            if augment is not None:
                x, y = train.augment_batch(x, y, settings.augment, augment)
            step_fn(x, y.astype(np.float32))
            step += 1
            if step % every == 0 or step == total_steps:
                rows.append(
                    {
                        "variant": name,
                        "backbone": backbone,
                        "image_size": image_size,
                        "size": size,
                        "fold": fold,
                        "step": step,
                        "epoch": epoch,
                        "seconds": time.perf_counter() - t0,
                        **_evaluate(model, predict, train_mode, data, batch_size),
                    }
                )
            if step == total_steps:
                break
    frame = pd.DataFrame(rows)
    frame.attrs["epoch_steps"] = epoch_steps
    return frame


def _evaluate(model, predict, train_mode, data, batch_size) -> dict:
    """Scores of the current weights; training-mode predictions leave the weights as they were."""
    p_val = np.concatenate([predict(data.x_val[i : i + batch_size]) for i in range(0, len(data.x_val), batch_size)])
    p_test = np.concatenate([predict(data.x_test[i : i + batch_size]) for i in range(0, len(data.x_test), batch_size)])
    weights = model.get_weights()  # training=True updates BatchNorm's moving statistics
    p_train_mode = np.concatenate(
        [train_mode(data.x_val[i : i + batch_size]).numpy() for i in range(0, len(data.x_val), batch_size)]
    )
    model.set_weights(weights)
    y = data.y_val
    best = max((dice(y, (p_val >= t).astype(np.float32)), t) for t in THRESHOLDS)
    return {
        "val_dice": dice(y, p_val),
        "test_dice": dice(data.y_test, p_test),
        "val_dice_train_mode": dice(y, p_train_mode),
        "p_max": float(p_val.max()),
        "p_max_on_myocardium": float(p_val[y > 0].max()),
        "val_dice_best_threshold": best[0],
        "best_threshold": best[1],
    }


def paper_steps(sizes=(50, 100, 200, 400, 1000), batch_size: int = 8, epochs: int = 50) -> pd.DataFrame:
    """Optimizer steps a run gets under the paper's protocol (one pass per epoch), at most."""
    frame = subset_patients(sizes)
    frame["steps_per_epoch"] = -(-frame["train_images"] // batch_size)
    frame[f"steps_in_{epochs}_epochs"] = frame["steps_per_epoch"] * epochs
    return frame


def plot_curves(curves: pd.DataFrame, path: Path) -> None:
    """Validation DICE against optimizer steps per variant: inference mode (what the study
    reports, solid) and training mode (BatchNorm on the batch's own statistics, dotted);
    right: test DICE."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    colours = dict(
        zip(VARIANTS, ["black", "tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:green"])
    )
    for name, block in curves.groupby("variant", sort=False):
        left.plot(block["step"], block["val_dice"], color=colours.get(name), label=name, linewidth=1.5)
        left.plot(block["step"], block["val_dice_train_mode"], color=colours.get(name), linestyle=":", linewidth=1.0)
        right.plot(block["step"], block["test_dice"], color=colours.get(name), label=name, linewidth=1.5)
    left.set_title("Validation DICE (solid: inference mode; dotted: training-mode BatchNorm)", fontsize=9)
    right.set_title("Test DICE (inference mode)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("Optimizer steps (batch 8)")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1)
    left.set_ylabel("DICE")
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{BACKBONE}, {IMAGE_SIZE} px, size {SIZE} (fold 0) of the demo's phantom cohort", fontsize=10)
    fig.savefig(path, dpi=120, metadata={"Software": None})


def dice_at_steps(curves: pd.DataFrame, steps=(50, 100, 200, 400)) -> pd.DataFrame:
    """Validation and test DICE of each variant at a few step counts (a wide table)."""
    picked = curves[curves["step"].isin(steps)]
    table = picked.pivot_table(index="variant", columns="step", values=["val_dice", "test_dice"], sort=False)
    return table.reindex([v for v in VARIANTS if v in set(curves["variant"])])


def schedule_table(backbone: str = BACKBONE) -> pd.DataFrame:
    """Per dataset size and schedule: the runs, their mean and spread of holdout DICE, the
    optimizer steps and the seconds of training (plus import and build) a run took."""
    frames = []
    for study, name in (("learning_curve_fixed", "fixed 100 steps"), ("learning_curve", "early stopping")):
        path = ROOT / "results" / study / "metrics.csv"
        if not path.is_file():
            configs = "config/learning_curve.yaml" + (" config/learning_curve_fixed.yaml" if "fixed" in study else "")
            raise SystemExit(f"{path} is missing: run .venv/bin/snakemake --configfile {configs} --cores 2")
        m = pd.read_csv(path)
        m = m[m["backbone"] == backbone].assign(
            schedule=name, seconds=lambda t: t["seconds_train"] + t["seconds_import"] + t["seconds_build"]
        )
        frames.append(m)
    runs = pd.concat(frames, ignore_index=True)
    table = runs.groupby(["size", "schedule"], sort=False).agg(
        runs=("holdout_dice", "size"),
        holdout_dice=("holdout_dice", "mean"),
        holdout_dice_sd=("holdout_dice", "std"),
        steps=("train_steps", "mean"),
        seconds=("seconds", "mean"),
        seconds_total=("seconds", "sum"),
    )
    return table.reset_index().sort_values(["schedule", "size"], kind="stable")


def study_tables(study: str, configs: str, folder: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics.csv, holdout.csv) of a study (in `folder`, default its results folder), or
    the command that makes them."""
    folder = folder or ROOT / "results" / study
    if not (folder / "holdout.csv").is_file():
        raise SystemExit(f"{folder}/holdout.csv is missing: run .venv/bin/snakemake --configfile {configs} --cores 2")
    return pd.read_csv(folder / "metrics.csv"), pd.read_csv(folder / "holdout.csv")


def pilot_table(
    resamples: int = 400, seed: int = 0, folder: Path | None = None, full_folder: Path | None = None
) -> pd.DataFrame:
    """The pilot (config/learning_curve_pilot.yaml: sizes up to 480) forecasts the sizes only
    the full study trained (600, 1,200): every family's curve, as the sample-size analysis
    fits and widens it, the paper's OLS refitted on the pilot's runs and the pilot's largest
    mean carried forward, each against the full study's observed mean holdout DICE (its own
    runs, the same holdout pool). Nothing of the full study enters a fit."""
    from unetcap.analysis.backtest import BASELINES, _ols_predictions, band
    from unetcap.analysis.formula import PAPER_OLS
    from unetcap.analysis.resample import replicate_means
    from unetcap.analysis.sample_size import analyse_sample_size, curve_units

    pilot, pilot_holdout = study_tables(
        "learning_curve_pilot", "config/learning_curve.yaml config/learning_curve_pilot.yaml", folder
    )
    full, _ = study_tables("learning_curve", "config/learning_curve.yaml", full_folder)
    result = analyse_sample_size(pilot, pilot_holdout, "holdout_dice", resamples=resamples, seed=seed)
    units = result["fitted"]
    held = np.array([size for size in sorted(full["size"].unique()) if size > units.sizes.max()], float)
    observed = full[full["size"].isin(held)].groupby(["backbone", "size"])["holdout_dice"].mean()
    frame = curve_units(pilot, pilot_holdout, "holdout_dice", "all")[1].data
    ols = _ols_predictions(frame[frame["backbone"].isin(units.backbones)], units.sizes, held, PAPER_OLS)
    last = replicate_means(units, 0, seed)[0][:, -1]
    rows = []
    for name, fit in result["fits"].items():
        predicted = fit.predict(held)
        low, high = band(predicted[1:])
        k = result["widening"] if name == result["chosen"] else 1.0
        for i, backbone in enumerate(units.backbones):
            for j, size in enumerate(held):
                central = predicted[0][i, j]
                rows.append(
                    {
                        "method": name + (" (chosen)" if name == result["chosen"] else ""),
                        "backbone": backbone,
                        "size": int(size),
                        "observed": observed[(backbone, size)],
                        "predicted": central,
                        "low": central - k * (central - low[i, j]),
                        "high": central + k * (high[i, j] - central),
                    }
                )
    for name in BASELINES:
        for i, backbone in enumerate(units.backbones):
            for size in held:
                value = ols.get((backbone, float(size)), np.nan) if name == "ols" else last[i]
                rows.append(
                    {"method": name, "backbone": backbone, "size": int(size), "observed": observed[(backbone, size)]}
                    | {"predicted": value, "low": np.nan, "high": np.nan}
                )
    table = pd.DataFrame(rows)
    table["error"] = table["predicted"] - table["observed"]
    inside = (table["low"] <= table["observed"]) & (table["observed"] <= table["high"])
    table["inside"] = np.where(table["low"].isna(), np.nan, inside.astype(float))
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", default=["pixels", "curves"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "learning")
    parser.add_argument("--pilot", type=Path, default=None, help="the pilot's merged tables (default its results)")
    parser.add_argument("--full", type=Path, default=None, help="the full study's merged tables (default its results)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 200)
    if "pixels" in args.sections:
        shares = pixel_shares()
        shares.to_csv(args.out / "pixels.csv", index=False, float_format="%.4g")
        print(shares.round(4).to_string(index=False))
        steps = paper_steps()
        steps.to_csv(args.out / "patients.csv", index=False)
        print(steps.to_string(index=False))
    if "curves" in args.sections:
        frames = []
        for name in args.variants:
            frame = curve(name, VARIANTS[name], args.steps, args.every)
            frames.append(frame)
            last = frame.iloc[-1]
            print(
                f"{name}: val DICE {last.val_dice:.3f} (train mode {last.val_dice_train_mode:.3f}, "
                f"best threshold {last.val_dice_best_threshold:.3f}), test {last.test_dice:.3f}, "
                f"p_max {last.p_max:.3f}, {last.seconds:.0f} s",
                flush=True,
            )
        curves = pd.concat(frames, ignore_index=True)
        curves.to_csv(args.out / "curves.csv", index=False, float_format="%.4g")
    if "schedule" in args.sections:
        table = schedule_table()
        table.to_csv(args.out / "schedule.csv", index=False, float_format="%.4g")
        print(table.round(3).to_string(index=False))
    if "pilot" in args.sections:
        table = pilot_table(folder=args.pilot, full_folder=args.full)
        table.to_csv(args.out / "pilot.csv", index=False, float_format="%.4g")
        summary = table.groupby("method", sort=False).agg(
            mae=("error", lambda e: e.abs().mean()), cases=("error", "count"), inside=("inside", "mean")
        )
        print(table.round(4).to_string(index=False))
        print(summary.round(4).to_string())
    if "figures" in args.sections or "curves" in args.sections:
        curves = pd.read_csv(args.out / "curves.csv")
        plot_curves(curves, args.out / "curves.png")
        print(dice_at_steps(curves).round(3).to_string())


if __name__ == "__main__":
    main()
