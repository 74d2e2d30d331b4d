"""Generated merged tables (results/metrics.csv, results/histories.csv) for the analysis tests.

Plausible numbers, not real results: DICE rises with log dataset size towards a ceiling,
the long (deeper) encoders start lower and climb faster, so they win at large sizes; lr 1e-2
costs DICE and sometimes diverges, lr 1e-4 learns slowly on small subsets; strong L2 costs
a little; noise shrinks with size.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from unetcap.study import BACKBONES

SIZES = (200, 500, 1000, 2500, 5000, 10000)
LRS = (0.01, 0.001, 0.0001)
REGS = (0.01, 0.0001, 1e-06)
BACKBONE_NAMES = tuple(BACKBONES)
# DICE at 200 images, and how fast it climbs with log size, per backbone.
START = {
    "vgg16": 0.68,
    "vgg19": 0.64,
    "resnet18": 0.66,
    "resnet50": 0.58,
    "efficientnetb0": 0.62,
    "efficientnetb5": 0.55,
}
RATE = {
    "vgg16": 0.33,
    "vgg19": 0.42,
    "resnet18": 0.40,
    "resnet50": 0.56,
    "efficientnetb0": 0.45,
    "efficientnetb5": 0.62,
}
PARAMS = {
    "vgg16": 23_752_273,
    "vgg19": 29_061_969,
    "resnet18": 14_340_570,
    "resnet50": 32_561_114,
    "efficientnetb0": 10_114_925,
    "efficientnetb5": 37_004_157,
}
# The grid of config/test.yaml (the workflow tests' tiny study): one size, two short encoders
# of different families, one lr, one L2.
TEST_GRID = {
    "sizes": (40,),
    "backbones": ("resnet18", "efficientnetb0"),
    "lrs": (0.001,),
    "regs": (0.0001,),
    "folds": 2,
}
CEILING = 0.92


def metrics_table(
    seed: int = 0,
    missing: float = 0.0,
    sizes=SIZES,
    backbones=BACKBONE_NAMES,
    lrs=LRS,
    regs=REGS,
    folds: int = 5,
    diverge: float = 0.04,
) -> pd.DataFrame:
    """A merged metrics table (docs/contracts.md columns), one row per run of the grid; a
    `missing` fraction of the runs is left out at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, backbone, lr, reg, fold in itertools.product(sizes, backbones, lrs, regs, range(folds)):
        b = BACKBONES[backbone]
        x = np.log(size / 200) / np.log(50)  # 0 at 200 images, 1 at 10000
        dice = CEILING - (CEILING - START[backbone]) * np.exp(-RATE[backbone] * np.log(size / 200))
        dice += {0.01: -0.05 - 0.03 * (b.family == "EfficientNet"), 0.001: 0.0, 0.0001: -0.04 * (1 - x)}.get(lr, 0.0)
        dice += {0.01: -0.02, 0.0001: 0.0, 1e-06: -0.005}.get(reg, 0.0)
        dice += rng.normal(0, 0.035 * (1.4 - x))
        status = "ok"
        if lr >= 0.01 and rng.random() < diverge:
            status, dice = "diverged", 0.0
        test_dice = float(np.clip(dice, 0.0, 0.99))
        val_dice = float(np.clip(test_dice + rng.normal(0.01, 0.015), 0.0, 0.99)) if status == "ok" else 0.0
        holdout_dice = test_dice  # the pool's own noise is simulated_study's; this stream stays the tests' own
        test_bce = float(0.012 + 0.25 * (1 - test_dice) ** 2 + abs(rng.normal(0, 0.004)))
        val_bce = float(0.010 + 0.25 * (1 - val_dice) ** 2 + abs(rng.normal(0, 0.004)))
        best = int(rng.integers(4, 46))
        epochs = min(50, best + 5)
        dev = round(0.8 * size)
        rows.append(
            {
                "size": size,
                "backbone": backbone,
                "family": b.family,
                "depth": b.depth,
                "lr": lr,
                "reg": reg,
                "fold": fold,
                "seed": 123,
                "status": status,
                "epochs": epochs,
                "best_epoch": best,
                "params": PARAMS[backbone],
                "n_images_train": dev - dev // folds,
                "n_images_val": dev // folds,
                "n_images_test": size - dev,
                "val_bce": val_bce,
                "val_dice": val_dice,
                "test_bce": test_bce,
                "test_dice": test_dice,
                "holdout_bce": test_bce,
                "holdout_dice": holdout_dice,
                "seconds_train": float(PARAMS[backbone] * size * epochs * 2e-9 * rng.uniform(0.9, 1.1)),
                "seconds_eval": float(rng.uniform(1, 5)),
                "provenance_device": "CPU",
                "provenance_data_sha256": "0" * 64,
            }
        )
    table = pd.DataFrame(rows)
    if missing:
        keep = rng.random(len(table)) >= missing
        table = table.loc[keep].reset_index(drop=True)
    return table


def histories_table(metrics: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per-epoch histories of the runs of `metrics` as merge writes them: the run columns in
    front, then `epoch, loss, val_loss, val_dice, epoch_lr, seconds, val_bce`."""
    rng = np.random.default_rng(seed)
    parts = []
    for run in metrics.itertuples():
        epoch = np.arange(1, run.epochs + 1)
        tau = 2 + 6 * (run.lr < 0.001) + 3 * (run.size < 1000)
        fall = np.exp(-epoch / tau)
        loss = run.val_bce * 0.8 + (0.6 - run.val_bce) * fall + rng.normal(0, 0.003, len(epoch))
        over = np.clip(epoch - run.best_epoch, 0, None) * 0.002 * (run.size < 2500)
        val_loss = run.val_bce + (0.65 - run.val_bce) * fall + over + rng.normal(0, 0.005, len(epoch))
        val_dice = run.val_dice * (1 - fall) + rng.normal(0, 0.01, len(epoch))
        parts.append(
            pd.DataFrame(
                {
                    "size": run.size,
                    "backbone": run.backbone,
                    "family": run.family,
                    "depth": run.depth,
                    "lr": run.lr,
                    "reg": run.reg,
                    "fold": run.fold,
                    "epoch": epoch,
                    "loss": np.abs(loss),
                    "val_loss": np.abs(val_loss),
                    "val_dice": np.clip(val_dice, 0, 1),
                    "epoch_lr": run.lr,
                    "seconds": run.seconds_train / run.epochs,
                    "val_bce": np.abs(val_loss),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def write_segmentations(metrics: pd.DataFrame, path, seed: int = 0, kept: int = 3, image_size: int = 32) -> None:
    """A merged segmentations file for the runs of `metrics`: rings on a dim disc (tiny_store's
    images), each run's prediction the true ring shifted by a pixel or two, less for higher DICE."""
    from tiny_store import ring_image

    from unetcap.scoring import dice
    from unetcap.segmentations import write_segmentations as write

    rng = np.random.default_rng(seed)
    images, masks = zip(*(ring_image(rng, image_size, empty=False) for _ in range(2 * kept)))
    images, masks = np.stack(images), np.stack(masks)
    runs, kept_runs = [], []
    for run in metrics.itertuples():
        rows = np.arange(kept) + (kept if run.size == metrics["size"].max() else 0)
        shift = int(round(4 * (1 - run.test_dice)))
        predicted = np.roll(masks[rows], shift, axis=2).astype(bool)
        kept_runs.append(
            {
                "rows": rows,
                "predicted": predicted,
                "dice": np.array([dice(m, p) for m, p in zip(masks[rows], predicted)]),
            }
        )
        runs.append({"size": run.size, "backbone": run.backbone, "lr": run.lr, "reg": run.reg, "fold": run.fold})
    write(path, runs, kept_runs, images, masks)


def write_tables(folder, seed: int = 0, missing: float = 0.0, **grid):
    """Write metrics.csv, histories.csv and segmentations.npz into `folder`; return the
    first two paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = metrics_table(seed, missing, **grid)
    metrics.to_csv(folder / "metrics.csv", index=False)
    histories_table(metrics, seed).to_csv(folder / "histories.csv", index=False)
    write_segmentations(metrics, folder / "segmentations.npz", seed)
    return folder / "metrics.csv", folder / "histories.csv"


def with_lr_slope_per_family(metrics: pd.DataFrame, strength: float) -> pd.DataFrame:
    """`metrics` with DICE given an lr slope per family, VGG's opposite to the others' (as
    in the paper's Table 1): an lr x model interaction the factor terms must follow."""
    slope = metrics["family"].map({"VGG": -1.0, "ResNet": 0.5, "EfficientNet": 1.0})
    dice = metrics["test_dice"] + strength * slope * np.log10(metrics["lr"] / 1e-3)
    return metrics.assign(test_dice=dice.clip(0, 1))


_ANALYSED: dict = {}


def analysed(seed: int = 0, missing: float = 0.0, **grid):
    """`analyse` of a generated table, its tables written to a temporary folder:
    (metrics, histories path, results, analysis folder). Computed once per process and
    shared by the test modules (the Tukey p-values of 630 pairs take seconds)."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from unetcap.analysis.run import analyse, write_results

    key = (seed, missing, tuple(sorted(grid.items())))
    if key not in _ANALYSED:
        folder = Path(tempfile.mkdtemp(prefix="unetcap-analysis-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        metrics_csv, histories_csv = write_tables(folder / "in", seed, missing, **grid)
        metrics = pd.read_csv(metrics_csv)
        result = analyse(metrics)
        write_results(result, rule_outputs("stats", folder / "analysis"))
        _ANALYSED[key] = (metrics, histories_csv, result, folder / "analysis")
    return _ANALYSED[key]


def rule_outputs(rule: str, folder) -> dict:
    """The named outputs of a rule of workflow/rules/ (`stats`, `sample_size`, `figures`), each
    in `folder` under its file name: what `snakemake.output` hands the library, read from
    the rule itself."""
    import re
    from pathlib import Path

    rules = sorted((Path(__file__).resolve().parents[1] / "workflow/rules").glob("*.smk"))
    text = next(t for t in (p.read_text() for p in rules) if f"\nrule {rule}:\n" in t)
    block = text.split(f"\nrule {rule}:\n", 1)[1].split("\nrule ", 1)[0]
    section = block.split("\n    output:\n", 1)[1].split("\n    log:\n", 1)[0]
    named = re.findall(r'^ {8}(\w+)=(?:report\(\s*)?"<results>/[^"]*?([^/"]+)"', section, flags=re.M)
    assert named, f"no named outputs found for rule {rule}"
    return {name: Path(folder) / file for name, file in named}
