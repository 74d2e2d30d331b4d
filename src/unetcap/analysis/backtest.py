"""Learning curves judged on sizes their fit did not see: rolling-origin backtests of every
curve family against two baselines, the family chosen by them, and the bands calibrated
by them (numpy, pandas; statsmodels for the OLS baseline only).

- **Backtest.** For every cut m = MIN_FIT .. K - 1, every family is refitted on the m
  smallest trained sizes (bootstrap included) and predicts each larger size's mean DICE;
  the error is predicted - observed (the mean of that size's runs). Beside it: the paper's
  OLS refitted on the same runs, and carrying the largest fitted size's mean forward.
- **Choice.** The family with the smallest mean |error| over the leave-largest-out cases
  (m = K - 1), pooled over the models; a tie goes to the family listed first in FAMILIES.
- **Calibration.** Each case's error in units of its band's half-width on the error's side
  (z = 1 on the band's edge). The band is widened by k = max(1, t(0.975, n) sqrt(mean z^2)),
  n the cases: a normal prediction interval whose scale the backtests estimate; k = 1 when
  the backtests fall inside the band as often as it promises. Coverage is reported as the
  share of cases inside the nominal band and, leaving each case out of the k it is judged
  by, inside the widened one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.curves import FAMILIES, fit_family
from unetcap.analysis.linear import fit_ols
from unetcap.analysis.predict import ols_predictions
from unetcap.analysis.resample import Units, replicate_means
from unetcap.study import BACKBONES

MIN_FIT = 3  # sizes a curve is fitted on in a backtest (three parameters)
LEVEL = 0.95
BASELINES = ("ols", "carry_forward")
BACKTEST_COLUMNS = [
    *("model", "backbone", "fitted_sizes", "largest_fitted", "size", "leave_largest_out", "observed"),
    *(f"{name}_{part}" for name in FAMILIES for part in ("predicted", "low", "high")),
    *(f"{name}_predicted" for name in BASELINES),
]  # then each family's and baseline's error (predicted - observed)


def band(predictions: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile band over the replicates (axis 0) of bootstrap predictions."""
    tail = (1 - level) / 2
    if len(predictions) == 0:
        nan = np.full(predictions.shape[1:], np.nan)
        return nan, nan
    return tuple(np.quantile(predictions, [tail, 1 - tail], axis=0, method="inverted_cdf"))


def backtest(units: Units, frame: pd.DataFrame, resamples: int, seed: int, ols_formula: str) -> pd.DataFrame:
    """One row per (model, cut m, held-out size): the observed mean, and per family and
    baseline the prediction and its error; per family the band (low, high). `frame` is the
    model frame of every run on the same metric, for the OLS."""
    full = replicate_means(units, 0, seed)[0]  # (M, K) observed means
    rows = []
    for m in range(MIN_FIT, len(units.sizes)):
        kept, held = units.sizes[:m], units.sizes[m:]
        reduced = units.subset(kept)
        means = replicate_means(reduced, resamples, seed)
        predictions = {}
        for family in FAMILIES.values():
            predicted = fit_family(family, reduced.sizes, means, reduced.weights).predict(held)
            predictions[family.name] = (predicted[0], *band(predicted[1:]))
        ols = _ols_predictions(frame, kept, held, ols_formula)
        for i, backbone in enumerate(units.backbones):
            if backbone not in reduced.backbones:
                continue  # no run at the m smallest sizes: nothing to refit
            r = reduced.backbones.index(backbone)
            for j, size in enumerate(held):
                row = {
                    "model": BACKBONES[backbone].short,
                    "backbone": backbone,
                    "fitted_sizes": m,
                    "largest_fitted": float(kept[-1]),
                    "size": float(size),
                    "leave_largest_out": m == len(units.sizes) - 1,
                    "observed": full[i, m + j],
                }
                for name, (central, low, high) in predictions.items():
                    row[f"{name}_predicted"] = central[r, j]
                    row[f"{name}_low"], row[f"{name}_high"] = low[r, j], high[r, j]
                row["ols_predicted"] = ols.get((backbone, float(size)), np.nan)
                row["carry_forward_predicted"] = means[0][r, m - 1]
                rows.append(row)
    return backtest_table(rows)


def backtest_table(rows=()) -> pd.DataFrame:
    """The backtest's rows (none: the empty table, with its columns) with each family's and
    baseline's error; cases whose size has no observed mean dropped."""
    table = pd.DataFrame(list(rows), columns=BACKTEST_COLUMNS)
    for name in [*FAMILIES, *BASELINES]:
        table[f"{name}_error"] = table[f"{name}_predicted"] - table["observed"]
    return table.dropna(subset=["observed"]).reset_index(drop=True)


def _ols_predictions(frame: pd.DataFrame, kept, held, formula: str) -> dict:
    """The paper's OLS refitted on the runs of the kept sizes: its mean prediction over the
    lr x reg grid per (backbone, held-out size); empty when it cannot be fitted."""
    reduced = frame[frame["size"].isin(kept)].reset_index(drop=True)
    try:
        ols = fit_ols(reduced, formula)
        table = ols_predictions(ols, reduced, [int(s) for s in held])[0]
    except UnetcapError:
        return {}
    return {(r.backbone, float(r.size)): float(r.predicted) for r in table.itertuples()}


def z_scores(table: pd.DataFrame, name: str) -> np.ndarray:
    """Each case's error in half-widths of its band, on the side of the error (1: on the
    band's edge); NaN without a band."""
    error = table[f"{name}_error"].to_numpy()
    central = table[f"{name}_predicted"].to_numpy()
    half = np.where(error > 0, central - table[f"{name}_low"].to_numpy(), table[f"{name}_high"].to_numpy() - central)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(half > 0, np.abs(error) / half, np.where(error == 0, 0.0, np.inf))
    return np.where(np.isnan(half) | np.isnan(error), np.nan, z)  # no band (resamples 0): no z


def widening(z: np.ndarray) -> float:
    """k = max(1, t(0.975, n) sqrt(mean z^2)) over the finite z; 1 with fewer than 2."""
    from scipy.stats import t

    z = z[np.isfinite(z)]
    if len(z) < 2:
        return 1.0
    return max(1.0, float(t.ppf(0.5 + LEVEL / 2, len(z)) * np.sqrt(np.mean(z**2))))


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per family and baseline: mean |error| and RMSE over the leave-largest-out
    cases and over all cases, the cases, and for the families the nominal band's coverage,
    the widening k and the leave-one-out coverage of the widened band; `chosen` marks the
    family the answer uses (module docstring)."""
    rows = []
    last = table[table["leave_largest_out"]] if len(table) else table
    for name in [*FAMILIES, *BASELINES]:
        if not len(table):
            break
        err_last = last[f"{name}_error"].dropna().to_numpy()
        err = table[f"{name}_error"].dropna().to_numpy()
        row = {
            "method": name,
            "kind": "family" if name in FAMILIES else "baseline",
            "formula": FAMILIES[name].formula if name in FAMILIES else _BASELINE_TEXT[name],
            "mae_largest": float(np.mean(np.abs(err_last))) if len(err_last) else np.nan,
            "rmse_largest": float(np.sqrt(np.mean(err_last**2))) if len(err_last) else np.nan,
            "cases_largest": len(err_last),
            "mae_all": float(np.mean(np.abs(err))) if len(err) else np.nan,
            "cases_all": len(err),
            "coverage_nominal": np.nan,
            "widening": np.nan,
            "coverage_widened_loo": np.nan,
        }
        if name in FAMILIES:
            z = z_scores(table, name)
            finite = z[np.isfinite(z) | np.isinf(z)]
            row["coverage_nominal"] = float(np.mean(finite <= 1)) if len(finite) else np.nan
            row["widening"] = widening(z)
            row["coverage_widened_loo"] = loo_coverage(z)
        rows.append(row)
    out = pd.DataFrame(
        rows,
        columns=[
            "method",
            "kind",
            "formula",
            "mae_largest",
            "rmse_largest",
            "cases_largest",
            "mae_all",
            "cases_all",
            "coverage_nominal",
            "widening",
            "coverage_widened_loo",
        ],
    )
    out["chosen"] = False
    families = out[(out["kind"] == "family") & out["mae_largest"].notna()]
    if len(families):
        out.loc[families["mae_largest"].idxmin(), "chosen"] = True  # idxmin: the first of equals
    return out


_BASELINE_TEXT = {
    "ols": "the paper's OLS, refitted on the same runs",
    "carry_forward": "the largest fitted size's mean, carried forward",
}


def loo_coverage(z: np.ndarray) -> float:
    """Share of cases inside the band widened by the k of the other cases."""
    z = np.asarray(z, dtype=float)
    ok = np.isfinite(z) | np.isinf(z)
    idx = np.flatnonzero(ok)
    if len(idx) < 3:
        return np.nan
    inside = [z[i] <= widening(np.delete(z, i)) for i in idx]
    return float(np.mean(inside))
