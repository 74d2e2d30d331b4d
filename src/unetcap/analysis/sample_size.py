"""How many images do I need? Learning curves of DICE against dataset size, chosen and
calibrated by backtests, from the merged tables alone (docs/design.md §12).

1. The runs: by default each run's DICE on the whole holdout pool (`holdout_dice`: the
   same images for every run, docs/design.md §5), with its per-patient counts
   (holdout.csv), so that the bootstrap can resample holdout patients.
2. Replicates of the mean DICE per model and size that resample training sets (folds of
   each repeat, within each size) and holdout patients (`analysis.resample`).
3. Every curve family (`analysis.curves`) fitted to them; the family with the smallest
   leave-largest-out backtest error pooled over the models answers, its band widened by
   what the backtests say (`analysis.backtest`).
4. Per model and target DICE T the images needed: where the curve reaches T, and the
   interval where the widened band's upper and lower edges do. Forecasts stop at
   HORIZON x the largest trained size: beyond it the answer is said in words, never as an
   infinity.

A model or a study the curves cannot answer for (fewer than MIN_SIZES sizes, one training
set per size, DICE that does not rise with size) gets its reason in every table.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from unetcap import UnetcapError, schema
from unetcap.analysis.backtest import LEVEL, MIN_FIT, backtest, backtest_table, band, summary, widening, z_scores
from unetcap.analysis.curves import A_BOUNDS, FAMILIES, bound_text, fit_family, sizes_reaching
from unetcap.analysis.formula import PAPER_OLS
from unetcap.analysis.resample import holdout_counts, make_units, replicate_means
from unetcap.analysis.table import model_frame
from unetcap.study import BACKBONES

log = logging.getLogger(__name__)

# config analysis.sample_size, as the schema defines it
TARGETS = tuple(schema.default("analysis", "sample_size", "targets"))
RESAMPLES = schema.default("analysis", "sample_size", "resamples")
RUNS = schema.allowed("analysis", "sample_size", "runs")
METRICS = schema.allowed("analysis", "sample_size", "metric")
MIN_SIZES = MIN_FIT + 1  # three to fit a curve, one more to check it on
HORIZON = 4  # forecasts up to this many times the largest trained size
CURVE_POINTS = 160


def select_runs(metrics: pd.DataFrame, metric: str = "holdout_dice", runs: str = "all") -> pd.DataFrame:
    """The model frame (`analysis.table.model_frame`) of the runs the curves are fitted on:
    every run (`all`), or per backbone and size the runs of the (lr, reg) with the highest
    mean validation DICE (`best`; ties go to the smaller lr, then reg)."""
    if runs not in RUNS:
        raise UnetcapError(f"analysis.sample_size.runs: {runs!r} is not one of {', '.join(RUNS)}")
    data = model_frame(metrics, metric).data
    if runs == "all":
        return data
    val = metrics.assign(val_dice=pd.to_numeric(metrics["val_dice"], errors="coerce"))
    mean = (
        val.groupby(["backbone", "size", "lr", "reg"], as_index=False)["val_dice"]
        .mean()
        .dropna(subset=["val_dice"])
        .sort_values(["backbone", "size", "lr", "reg"], kind="stable")
    )
    best = mean.loc[mean.groupby(["backbone", "size"])["val_dice"].idxmax(), ["backbone", "size", "lr", "reg"]]
    return data.merge(best, on=["backbone", "size", "lr", "reg"], how="inner").reset_index(drop=True)


def curve_units(metrics: pd.DataFrame, holdout: pd.DataFrame | None, metric: str, runs: str):
    """(units, model frame of every run, notes): the runs of the curves and, for the holdout
    pool's DICE, their per-patient counts."""
    if metric not in METRICS:
        raise UnetcapError(f"analysis.sample_size.metric: {metric!r} is not one of {', '.join(METRICS)}")
    if metric not in metrics.columns:
        raise UnetcapError(
            f"analysis.sample_size.metric: the metrics table has no {metric} column (runs made before every run "
            "was scored on the holdout pool); retrain them, or set analysis.sample_size.metric: test_dice to "
            "fit the curves on each subset's own test set"
        )
    frame = model_frame(metrics, metric)
    data = select_runs(metrics, metric, runs)
    counts, notes = None, []
    if metric == "holdout_dice" and holdout is not None:
        counts = holdout_counts(data, holdout)
        notes.append(
            f"Scores: each run's DICE on the whole holdout pool ({len(counts[1])} patients, the same images for every "
            "run); the bootstrap resamples the holdout patients and the training sets (folds) of each size."
        )
    elif metric == "holdout_dice":
        notes.append("Scores: the holdout pool's DICE; no per-patient counts given, so only the folds are resampled.")
    else:
        notes.append(
            f"Scores: {metric}, not the holdout pool: "
            + ("each size is judged on its own small test set. " if metric == "test_dice" else "")
            + "Only the training sets (folds) of each size are resampled."
        )
    notes.append(frame.runs)
    units = make_units(data[["backbone", "size", "fold", "DICE"]], counts)
    return units, frame, notes


def reasons(units, means: np.ndarray) -> tuple[str, dict]:
    """(a reason no model can be answered for, or "", and per backbone the reason it cannot):
    too few sizes, one training set per size, a model missing sizes, or DICE that does not
    rise with size (the log-linear slope's bootstrap interval not above 0)."""
    k = len(units.sizes)
    if k < MIN_SIZES:
        listed = ", ".join(f"{int(s):,}" for s in units.sizes)
        return (
            f"only {k} trained dataset size{'s' if k != 1 else ''} ({listed}): a curve is fitted on {MIN_FIT} and "
            f"checked on a size it did not see, so it needs at least {MIN_SIZES}",
            {},
        )
    if units.units_per_size().max() < 2:
        return "one training set (fold) per size: the spread between training sets cannot be estimated", {}
    per_model = {}
    slope = fit_family(FAMILIES["loglinear"], units.sizes, np.nan_to_num(means), units.weights).b
    for i, backbone in enumerate(units.backbones):
        have = units.weights[i] > 0
        if have.sum() < MIN_SIZES or not have[:MIN_FIT].all():
            per_model[backbone] = f"runs at only {int(have.sum())} of the {k} sizes"
            continue
        per_doubling = slope[:, i] * np.log(2)
        low, high = band(per_doubling[1:]) if len(per_doubling) > 1 else (per_doubling[0], per_doubling[0])
        text = f"{per_doubling[0]:+.3f} per doubling of the images"
        if len(per_doubling) > 1:
            text += f", {100 * LEVEL:g} % interval {float(low):+.3f} to {float(high):+.3f}"
        if float(high) < 0:
            per_model[backbone] = f"DICE falls with size ({text})"
        elif not float(low) > 0:
            per_model[backbone] = f"DICE does not rise clearly with size ({text})"
    return "", per_model


def analyse_sample_size(
    metrics: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    metric: str = "holdout_dice",
    targets=TARGETS,
    resamples: int = RESAMPLES,
    runs: str = "all",
    seed: int = 0,
    ols_formula: str = PAPER_OLS,
) -> dict:
    """Every table of the sample-size analysis, as data frames (no file is written)."""
    targets = [float(t) for t in targets]
    bad = [t for t in targets if not 0 < t < 1]
    if bad or not targets:
        raise UnetcapError(
            f"analysis.sample_size.targets: {bad or targets} - each target DICE must lie between 0 and 1"
        )
    if int(resamples) < 0:
        raise UnetcapError(f"analysis.sample_size.resamples: {resamples} is negative")
    started = time.perf_counter()
    units, frame, notes = curve_units(metrics, holdout, metric, runs)
    frame = frame.data
    means = replicate_means(units, int(resamples), seed)
    study_reason, model_reasons = reasons(units, means)
    result = {"units": units, "metric": metric, "runs": runs, "targets": targets, "notes": notes}
    result["reason"] = study_reason
    result["model_reasons"] = model_reasons
    # the models with an answer: the curves, the backtest and the choice rest on them alone
    fitted = units.only([b for b in units.backbones if b not in model_reasons])
    result["fitted"] = fitted
    if study_reason or not fitted.backbones:
        result.update(
            backtest=backtest_table(), families=summary(backtest_table()), chosen="", widening=np.nan, fits={}
        )
    else:
        table = backtest(fitted, frame[frame["backbone"].isin(fitted.backbones)], int(resamples), seed, ols_formula)
        families = summary(table)
        chosen = families.loc[families["chosen"], "method"]
        result.update(backtest=table, families=families, chosen=chosen.iloc[0] if len(chosen) else "")
        result["widening"] = widening(z_scores(table, result["chosen"])) if result["chosen"] else np.nan
        means = replicate_means(fitted, int(resamples), seed)
        result["fits"] = {name: fit_family(f, fitted.sizes, means, fitted.weights) for name, f in FAMILIES.items()}
        if not result["chosen"]:
            result["reason"] = "no backtest case could be computed (no size above the smallest three has runs)"
    result["grid"] = curve_grid(units.sizes)
    result["seconds"] = time.perf_counter() - started
    log.info("sample size: %d models, %d resamples, %.1f s", len(units.backbones), resamples, result["seconds"])
    return result


def curve_grid(sizes) -> np.ndarray:
    """Sizes the curves are drawn and solved on: the smallest trained size to HORIZON x the
    largest, log-spaced, with every trained size."""
    sizes = np.asarray(sizes, dtype=float)
    if not len(sizes):
        return sizes
    grid = np.geomspace(sizes.min(), HORIZON * sizes.max(), CURVE_POINTS)
    return np.unique(np.concatenate([grid, sizes]))


def answer_band(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chosen family's curves on the grid, (M, G) each: central, and the band widened by
    the backtests' k (the raw bootstrap band when k is not known)."""
    fit = result["fits"][result["chosen"]]
    predicted = fit.predict(result["grid"])
    central = predicted[0]
    low, high = band(predicted[1:])
    k = result["widening"] if np.isfinite(result["widening"]) else 1.0
    return central, central - k * (central - low), central + k * (high - central)


def images_table(result: dict) -> pd.DataFrame:
    """One row per model and target: the images needed, its interval (from the widened band;
    `images_high` NaN with `open` True where the band's lower edge does not reach T within
    the horizon), the plateau where the family has one, a status and its reason."""
    units, grid, rows = result["units"], result["grid"], []
    chosen = result["chosen"]
    largest = float(units.sizes.max()) if len(units.sizes) else np.nan
    if chosen:
        central, low, high = answer_band(result)
        fit = result["fits"][chosen]
        plateau = plateau_of(result)
    for backbone in units.backbones:
        reason = result["reason"] or result["model_reasons"].get(backbone, "")
        i = result["fitted"].backbones.index(backbone) if not reason and chosen else -1
        for target in result["targets"]:
            row = {
                "model": BACKBONES[backbone].short,
                "backbone": backbone,
                "target": target,
                "runs": result["runs"],
                "family": chosen,
                "status": "not answered" if reason else "",
                "images": np.nan,
                "images_low": np.nan,
                "images_high": np.nan,
                "open": False,
                "plateau": np.nan,
                "plateau_low": np.nan,
                "plateau_high": np.nan,
                "plateau_note": "",
                "largest_size": largest,
                "horizon": HORIZON * largest,
                "reason": reason,
            }
            if not reason and chosen:
                row.update(plateau[i])
                row.update(_reach(target, grid, central[i], low[i], high[i], largest, row))
                if fit.on_bound[0, i]:
                    row["reason"] = "; ".join(x for x in (row["reason"], bound_text(fit.on_bound[0, i])) if x)
            rows.append(row)
    return pd.DataFrame(rows, columns=IMAGES_COLUMNS)


IMAGES_COLUMNS = [
    "model",
    "backbone",
    "target",
    "runs",
    "family",
    "status",
    "images",
    "images_low",
    "images_high",
    "open",
    "plateau",
    "plateau_low",
    "plateau_high",
    "plateau_note",
    "largest_size",
    "horizon",
    "reason",
]


def plateau_of(result: dict) -> list[dict]:
    """Per model, the chosen family's plateau a with its widened interval, or why there is none."""
    family = FAMILIES[result["chosen"]]
    fit = result["fits"][result["chosen"]]
    k = result["widening"] if np.isfinite(result["widening"]) else 1.0
    out = []
    for i in range(fit.a.shape[1]):
        if not family.saturating:
            out.append({"plateau_note": f"none: the {family.label} form never levels off"})
            continue
        a = fit.a[0, i]
        low, high = band(fit.a[1:, i])
        low, high = np.clip([a - k * (a - low), a + k * (high - a)], *A_BOUNDS)  # NaN without resamples
        note = "not identified (at its bound 1)" if fit.on_bound[0, i].startswith("a=1") else ""
        out.append({"plateau": a, "plateau_low": low, "plateau_high": high, "plateau_note": note})
    return out


def _reach(target, grid, central, low, high, largest, row) -> dict:
    """Where the curve and the band's edges reach `target`, and the status that says so."""
    needed, first, last = (sizes_reaching(curve[None], grid, target)[0] for curve in (central, high, low))
    banded = bool(np.isfinite(low).any())  # no band without bootstrap replicates (resamples 0)
    out = {"images": needed, "images_low": first, "images_high": last, "open": banded and not np.isfinite(last)}
    horizon = f"{row['horizon']:,.0f}"
    if np.isfinite(needed) and needed <= grid[0]:
        out["status"] = "reached at the smallest size"
    elif np.isfinite(row["plateau_high"]) and row["plateau_high"] < target:
        out.update(status="not reachable", images=np.nan, images_low=np.nan, images_high=np.nan, open=False)
        out["reason"] = f"the target lies above the plateau's {100 * LEVEL:g} % interval"
    elif not np.isfinite(needed):
        out.update(status="beyond the horizon", images=np.nan, images_high=np.nan)
        out["reason"] = f"the curve does not reach it within {horizon} images, the most these data support"
    else:
        out["status"] = "trained range" if needed <= largest else "extrapolated"
        if out["open"]:
            out["reason"] = f"the band's lower edge does not reach it within {horizon} images"
    return out


def fits_table(result: dict) -> pd.DataFrame:
    """One row per family and model: a, b and the grid parameter (c or d) with their
    bootstrap intervals, the bound a fit ends on (in words), the RMSE of the size means and
    the model's leave-largest-out mean |error|; `chosen` marks the family that answers."""
    units, rows = result["fitted"], []
    table = result["backtest"]
    for name, fit in result["fits"].items():
        family = FAMILIES[name]
        for i, backbone in enumerate(units.backbones):
            row = {"family": name, "model": BACKBONES[backbone].short, "backbone": backbone}
            for key, values in (("a", fit.a), ("b", fit.b), ("theta", fit.theta)):
                low, high = band(values[1:, i])
                row.update({key: values[0, i], f"{key}_low": low, f"{key}_high": high})
            row["theta_name"] = family.theta_name
            row["on_bound"] = bound_text(fit.on_bound[0, i])
            row["rmse"] = float(np.sqrt(fit.cost[0, i]))
            mine = table[(table["backbone"] == backbone) & table["leave_largest_out"]] if len(table) else table
            row["mae_largest"] = float(mine[f"{name}_error"].abs().mean()) if len(mine) else np.nan
            row["chosen"] = name == result["chosen"]
            rows.append(row)
    return pd.DataFrame(rows, columns=FITS_COLUMNS)


FITS_COLUMNS = [
    *("family", "model", "backbone"),
    *(f"{key}{end}" for key in ("a", "b", "theta") for end in ("", "_low", "_high")),
    *("theta_name", "on_bound", "rmse", "mae_largest", "chosen"),
]


def curves_table(result: dict) -> pd.DataFrame:
    """Each model's chosen curve on the grid with its widened band, and the other families'
    curves (no band); `extrapolated` beyond the largest trained size."""
    units, grid, rows = result["fitted"], result["grid"], []
    if not result["chosen"]:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    central, low, high = answer_band(result)
    for name, fit in result["fits"].items():
        predicted = fit.predict(grid)[0]
        for i, backbone in enumerate(units.backbones):
            chosen = name == result["chosen"]
            rows.append(
                pd.DataFrame(
                    {
                        "model": BACKBONES[backbone].short,
                        "backbone": backbone,
                        "family": name,
                        "chosen": chosen,
                        "size": grid,
                        "dice": central[i] if chosen else predicted[i],
                        "low": low[i] if chosen else np.nan,
                        "high": high[i] if chosen else np.nan,
                        "extrapolated": grid > units.sizes.max(),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=CURVE_COLUMNS)


CURVE_COLUMNS = ["model", "backbone", "family", "chosen", "size", "dice", "low", "high", "extrapolated"]


def crossings_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Every size on the curves' grid where two models' chosen curves cross: which leads
    above it (`overtakes`), and whether the crossing lies inside the trained range."""
    chosen = curves[curves["chosen"].astype(bool)] if len(curves) else curves
    models = list(dict.fromkeys(chosen["model"])) if len(chosen) else []
    rows = []
    for i, one in enumerate(models):
        for two in models[i + 1 :]:
            a = chosen[chosen["model"] == one]
            b = chosen[chosen["model"] == two]
            gap = a["dice"].to_numpy() - b["dice"].to_numpy()
            size = a["size"].to_numpy()
            for k in np.flatnonzero(np.sign(gap[:-1]) * np.sign(gap[1:]) < 0):
                frac = gap[k] / (gap[k] - gap[k + 1])
                n = float(np.exp(np.log(size[k]) + frac * (np.log(size[k + 1]) - np.log(size[k]))))
                leader, other = (one, two) if gap[k + 1] > 0 else (two, one)
                dice = float(a["dice"].iloc[k] + frac * (a["dice"].iloc[k + 1] - a["dice"].iloc[k]))
                inside = not bool(a["extrapolated"].iloc[k + 1])
                rows.append(
                    {"overtakes": leader, "overtaken": other, "size": n, "dice": dice, "inside_trained_range": inside}
                )
    return pd.DataFrame(rows, columns=["overtakes", "overtaken", "size", "dice", "inside_trained_range"])
