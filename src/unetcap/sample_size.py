"""How many images do I need? Learning curves of DICE against dataset size, from the merged
metrics table alone.

The paper's OLS is linear in log(Dataset): it never levels off, so it cannot say where more
images stop paying. Here each backbone gets an inverse power law with a plateau,

    DICE(N) = a - b * N^(-c),   0 <= a <= 1, b >= 0, c > 0,

fitted by weighted nonlinear least squares (Figueroa et al. 2012, BMC Med Inform Decis Mak
12:8; Cho et al. 2015; Hestness et al. 2017) to the mean DICE of each trained dataset size,
weighted by its number of runs (the same estimate as least squares on the runs themselves).
Not by the inverse of each size's estimated variance: from five runs per size those weights
are so noisy that the bootstrap intervals under-cover (84 % instead of 95 % in 300
simulations); the bootstrap below carries the sizes' different spreads instead. N is divided
by the largest trained size inside the fit for conditioning; a, b, c are reported in the
original parametrisation.

- `runs`: `all` pools every run of the lr x reg grid, the same runs as the OLS and the HSD
  groups (no choice made on any metric, and the backtest compares like with like); `best`
  keeps, per backbone and size, the (lr, reg) with the highest mean validation DICE, so the
  choice is never made on the test set.
- Intervals: a seeded bootstrap that resamples the runs within each size (with replacement),
  refits from the full-data fit, and takes 95 % percentile intervals. Each resampled mean is
  moved away from the size's mean by sqrt(n / (n - 1)), so that its variance is s^2 / n and
  not (n - 1) / n of it (Davison and Hinkley 1997, section 3.3): with five runs per size the
  plain percentile bootstrap is 10 % too narrow.
- The answer: per backbone and target DICE T, the images needed N* = (b / (a - T))^(1/c),
  "not reachable" when T lies above the plateau's 95 % interval, "beyond the data" when N* is
  more than EXTRAPOLATION times the largest trained size.
- Crossings: where two backbones' curves cross (one overtakes the other).
- Backtest: refit without the largest size (and without the two largest, with at least five
  sizes), predict its mean DICE, and set the error beside the OLS's for the same prediction.

A backbone with fewer than MIN_SIZES trained sizes or a constant DICE is "not fitted", a fit
that fails is "fit failed", each with its reason, in every table: none is dropped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.formula import PAPER_OLS
from unetcap.analysis.render import Formatted, csv_text, fmt_num, to_html, to_markdown, write_outputs
from unetcap.analysis.table import model_frame, read_metrics
from unetcap.study import BACKBONES, FIGURE_ORDER

log = logging.getLogger(__name__)

TARGETS = (0.70, 0.80, 0.85, 0.90)
RESAMPLES = 1000
RUNS = ("all", "best")
LEVEL = 0.95
MIN_SIZES = 3  # three parameters
EXTRAPOLATION = 4  # N* above this many times the largest trained size: "beyond the data"
C_BOUNDS = (1e-3, 5.0)  # c > 0; beyond 5 the curve is a step, below 1e-3 a straight line in log N
CURVE_POINTS = 120
FEW_RUNS = 5  # fewer runs at a size: the bootstrap intervals are too narrow (a note says so)
CURVE = "DICE(N) = a - b * N^(-c)"


# ---------------------------------------------------------------------------------------
# The runs and the curve
# ---------------------------------------------------------------------------------------


def select_runs(metrics: pd.DataFrame, metric: str = "test_dice", runs: str = "all") -> pd.DataFrame:
    """The model frame (`analysis.table.model_frame`) of the runs the curves are fitted on: every run
    (`all`), or per backbone and size the runs of the (lr, reg) with the highest mean
    validation DICE (`best`; ties go to the smaller lr, then reg)."""
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
    keep = data.merge(best, on=["backbone", "size", "lr", "reg"], how="inner")
    return keep.reset_index(drop=True)


def curve(n, a: float, b: float, c: float) -> np.ndarray:
    """DICE(N) = a - b N^(-c)."""
    return a - b * np.power(np.asarray(n, dtype=float), -c)


def images_needed(target: float, a: float, b: float, c: float) -> float:
    """N* = (b / (a - target))^(1/c): the size at which the curve reaches `target`; infinite
    when the plateau a is not above it."""
    if not a > target:
        return math.inf
    if b <= 0:
        return 0.0
    with np.errstate(over="ignore"):
        return float(np.power(b / (a - target), 1.0 / c))


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------


@dataclass
class Points:
    """One backbone's runs, grouped by size: what the curve is fitted on."""

    sizes: np.ndarray
    values: list[np.ndarray]  # the runs' DICE at each size
    means: np.ndarray
    weights: np.ndarray  # runs at each size, scaled to mean 1

    @property
    def scale(self) -> float:
        return float(self.sizes.max())


def points(dice, size) -> Points:
    """Per size: the runs' DICE, their mean and its weight, the number of runs."""
    dice, size = np.asarray(dice, dtype=float), np.asarray(size, dtype=float)
    sizes = np.unique(size)
    values = [dice[size == s] for s in sizes]
    n = np.array([len(v) for v in values], dtype=float)
    return Points(sizes, values, np.array([v.mean() for v in values]), n / n.mean())


@dataclass
class CurveFit:
    """One backbone's learning curve: the parameters (original N), how the fit went and the
    bootstrap's parameter draws (rows a, b, c of the resamples whose fit converged)."""

    backbone: str
    status: str  # "fitted", "not fitted", "fit failed"
    reason: str = ""
    a: float = np.nan
    b: float = np.nan
    c: float = np.nan
    points: Points | None = None
    n_runs: int = 0
    n_sizes: int = 0
    rmse: float = np.nan
    nfev: int = 0
    draws: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    resamples: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return BACKBONES[self.backbone].short

    @property
    def fitted(self) -> bool:
        return self.status == "fitted"

    @property
    def largest(self) -> float:
        return self.points.scale if self.points is not None else np.nan


def _residuals(theta, x, mean, sw):
    a, beta, c = theta
    return sw * (a - beta * np.power(x, -c) - mean)


def _jacobian(theta, x, mean, sw):
    _, beta, c = theta
    p = np.power(x, -c)
    return np.column_stack([sw, -sw * p, sw * beta * p * np.log(x)])


_LOWER = np.array([0.0, 0.0, C_BOUNDS[0]])
_UPPER = np.array([1.0, np.inf, C_BOUNDS[1]])


def _solve(x, mean, sw, start):
    """One fit of the scaled curve a - beta x^(-c) (x = N / largest) within the bounds.

    Levenberg-Marquardt (MINPACK, about four times faster than a bounded solver on these tiny
    problems) first. When its answer leaves the bounds (a plateau above 1, most often), the
    parameters it pushed out are fixed at the bound they crossed and the others refitted; that
    answer is kept when it satisfies the bounds' optimality condition (the cost still falls
    beyond each fixed bound). Otherwise the bounded trust-region solver decides. A start on a
    bound (a bootstrap refit from a full fit whose plateau is 1) tries that bound first: left
    free, Levenberg-Marquardt would wander off towards the straight line in log N."""
    from scipy.optimize import least_squares

    args = (x, mean, sw)
    on_bound = {
        k: bound
        for k, v in enumerate(start)
        for bound in (_LOWER[k], _UPPER[k])
        if np.isfinite(bound) and np.isclose(v, bound, rtol=1e-9, atol=1e-12)
    }
    if on_bound and len(on_bound) < 3:
        res = _solve_fixed(on_bound, args, start)
        if res is not None:
            return res
    res = least_squares(_residuals, start, jac=_jacobian, args=args, method="lm", x_scale="jac", max_nfev=100)
    if res.success and _within(res.x):
        return res
    if np.all(np.isfinite(res.x)):
        fixed = {k: (_LOWER[k] if v < _LOWER[k] else _UPPER[k]) for k, v in enumerate(res.x) if not _within_k(k, v)}
        reduced = _solve_fixed(fixed, args, start) if len(fixed) < 3 else None
        if reduced is not None:
            return reduced
    return least_squares(
        _residuals,
        np.clip(start, _LOWER, _UPPER),
        jac=_jacobian,
        bounds=(_LOWER, _UPPER),
        args=args,
        method="trf",
        x_scale="jac",
        max_nfev=200,
    )


def _within(theta) -> bool:
    return bool(np.all(theta >= _LOWER) and np.all(theta <= _UPPER))


def _within_k(k, value) -> bool:
    return _LOWER[k] <= value <= _UPPER[k]


def _solve_fixed(fixed: dict, args, start):
    """Levenberg-Marquardt over the parameters not in `fixed` (index: value); the result, with
    x the full parameter vector, when it is a constrained optimum, else None."""
    from scipy.optimize import least_squares

    free = [k for k in range(3) if k not in fixed]
    theta = np.array(start, dtype=float)
    for k, value in fixed.items():
        theta[k] = value

    def full(p):
        out = theta.copy()
        out[free] = p
        return out

    res = least_squares(
        lambda p: _residuals(full(p), *args),
        np.clip(theta, _LOWER, _UPPER)[free],
        jac=lambda p: _jacobian(full(p), *args)[:, free],
        method="lm",
        x_scale="jac",
        max_nfev=200,
    )
    whole = full(res.x)
    if not (res.success and _within(whole)):
        return None
    gradient = _jacobian(whole, *args).T @ _residuals(whole, *args)  # of half the squared residuals
    # at an upper bound the cost must still fall upwards (gradient <= 0), at a lower one downwards
    if any(gradient[k] > 1e-9 if value == _UPPER[k] else gradient[k] < -1e-9 for k, value in fixed.items()):
        return None
    res.x = whole
    return res


def _start(x, mean, w) -> np.ndarray:
    """The best of a few starts: for each c, (a, beta) by weighted linear least squares,
    clipped into the bounds."""
    best, best_cost = None, np.inf
    for c in (0.05, 0.2, 0.5, 1.0, 2.0):
        design = np.column_stack([np.ones_like(x), -np.power(x, -c)])
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], mean * sw, rcond=None)
        theta = np.array([min(max(coef[0], 0.0), 1.0), max(coef[1], 1e-6), c])
        cost = float(np.sum(_residuals(theta, x, mean, sw) ** 2))
        if cost < best_cost:
            best, best_cost = theta, cost
    return best


def fit_curve(dice, size, backbone: str, resamples: int = RESAMPLES, seed: int = 0) -> CurveFit:
    """The learning curve of one backbone's runs (DICE and size per run) with `resamples`
    bootstrap refits (runs resampled within each size, seeded by `seed` and the backbone).
    Never raises on data it cannot fit: the CurveFit says "not fitted" or "fit failed" and why."""
    dice, size = np.asarray(dice, dtype=float), np.asarray(size, dtype=float)
    sizes = np.unique(size)
    fit = CurveFit(backbone, "fitted", n_runs=len(dice), n_sizes=len(sizes))
    if len(sizes) < MIN_SIZES:
        fit.status, fit.reason = (
            "not fitted",
            (f"only {_sizes_text(sizes)}; the curve's 3 parameters need at least {MIN_SIZES}"),
        )
        return fit
    if np.ptp(dice) == 0:
        fit.status, fit.reason = "not fitted", f"DICE is the same ({dice[0]:g}) in every run"
        return fit
    pts = points(dice, size)
    fit.points = pts
    x = pts.sizes / pts.scale
    sw = np.sqrt(pts.weights)
    try:
        res = _solve(x, pts.means, sw, _start(x, pts.means, pts.weights))
    except (ValueError, np.linalg.LinAlgError) as err:
        fit.status, fit.reason = "fit failed", f"the optimiser stopped: {err}"
        return fit
    fit.nfev = int(res.nfev)
    if not res.success or not np.all(np.isfinite(res.x)):
        fit.status, fit.reason = "fit failed", f"did not converge ({res.message})"
        return fit
    a, beta, c = (float(v) for v in res.x)
    fit.a, fit.b, fit.c = a, beta * pts.scale**c, c
    fit.rmse = float(np.sqrt(np.mean((curve(pts.sizes, fit.a, fit.b, fit.c) - pts.means) ** 2)))
    for name, value, (low, high) in (("plateau a", a, (0, 1)), ("exponent c", c, C_BOUNDS)):
        if np.isclose(value, low) or np.isclose(value, high):
            fit.notes.append(f"{fit.model}: {name} sits at its bound ({value:g}); read the curve with care.")
    if resamples:
        fit.draws, fit.failed = _bootstrap(pts, res.x, resamples, seed, backbone)
        fit.resamples = resamples
        if fit.failed:
            fit.notes.append(
                f"{fit.model}: {fit.failed} of {resamples} bootstrap refits did not converge "
                "and are left out of the intervals."
            )
        fewest = min(len(v) for v in pts.values)
        if fewest < 2:
            fit.notes.append(f"{fit.model}: a size with a single run gives the bootstrap no spread there.")
        elif fewest < FEW_RUNS:
            fit.notes.append(
                f"{fit.model}: a size with only {fewest} runs: the intervals run narrow (in "
                "simulations the 95 % interval covered 87 % with 2 runs per size, 89 % with 3, 95 % with 5)."
            )
    return fit


def _sizes_text(sizes) -> str:
    listed = ", ".join(f"{int(s):,}" for s in sizes)
    return f"{len(sizes)} trained dataset size{'s' if len(sizes) != 1 else ''}" + (f" ({listed})" if listed else "")


def resampled_means(pts: Points, resamples: int, rng) -> np.ndarray:
    """(resamples, sizes) means of runs drawn with replacement within each size, each moved
    from the size's mean by sqrt(n / (n - 1)) so that its variance is s^2 / n."""
    out = np.empty((resamples, len(pts.sizes)))
    for j, values in enumerate(pts.values):
        n = len(values)
        draw = values[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
        inflate = math.sqrt(n / (n - 1)) if n > 1 else 0.0
        out[:, j] = pts.means[j] + inflate * (draw - pts.means[j])
    return out


def _bootstrap(pts: Points, theta, resamples: int, seed: int, backbone: str) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([int(seed), FIGURE_ORDER.index(backbone)])
    means = resampled_means(pts, resamples, rng)
    x = pts.sizes / pts.scale
    sw = np.sqrt(pts.weights)
    draws, failed = [], 0
    for row in means:
        res = _solve(x, row, sw, theta)
        if not res.success or not np.all(np.isfinite(res.x)):
            failed += 1
            continue
        a, beta, c = res.x
        draws.append((a, beta * pts.scale**c, c))
    return np.array(draws, dtype=float).reshape(-1, 3), failed


def fit_curves(data: pd.DataFrame, resamples: int = RESAMPLES, seed: int = 0) -> list[CurveFit]:
    """One CurveFit per backbone of `data` (a model frame), in the paper's figure order."""
    fits = []
    for backbone in [b for b in FIGURE_ORDER if b in set(data["backbone"])]:
        block = data[data["backbone"] == backbone]
        fits.append(fit_curve(block["DICE"], block["size"], backbone, resamples, seed))
    return fits


# ---------------------------------------------------------------------------------------
# The answer: images needed, crossings, backtest, curves
# ---------------------------------------------------------------------------------------


def _quantiles(values) -> tuple[float, float, float]:
    """Median and LEVEL percentile interval, no interpolation (the values may be infinite)."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.nan, np.nan, np.nan
    tail = (1 - LEVEL) / 2
    low, mid, high = np.quantile(values, [tail, 0.5, 1 - tail], method="inverted_cdf")
    return float(mid), float(low), float(high)


def plateau_interval(fit: CurveFit) -> tuple[float, float, float]:
    return _quantiles(fit.draws[:, 0])


def images_table(fits: list[CurveFit], targets=TARGETS, runs: str = "all") -> pd.DataFrame:
    """One row per backbone and target: the images needed (full fit, bootstrap median and
    percentile interval), the plateau with its interval, and a status: "trained range",
    "extrapolated" (up to EXTRAPOLATION x the largest size), "beyond the data", "above the
    fitted plateau" (a <= T, but T inside the plateau's interval), "not reachable" (T above
    the plateau's interval), "not fitted" or "fit failed" (with the reason)."""
    rows = []
    for fit in fits:
        for target in targets:
            row = {
                "model": fit.model,
                "backbone": fit.backbone,
                "target": float(target),
                "runs": runs,
                "status": fit.status,
                "images": np.nan,
                "images_median": np.nan,
                "images_low": np.nan,
                "images_high": np.nan,
                "plateau": fit.a,
                "plateau_low": np.nan,
                "plateau_high": np.nan,
                "largest_size": fit.largest,
                "reason": fit.reason,
            }
            if fit.fitted:
                needed = images_needed(target, fit.a, fit.b, fit.c)
                boot = [images_needed(target, *theta) for theta in fit.draws]
                median, low, high = _quantiles(boot)
                _, a_low, a_high = plateau_interval(fit)
                row.update(
                    images=needed,
                    images_median=median,
                    images_low=low,
                    images_high=high,
                    plateau_low=a_low,
                    plateau_high=a_high,
                    status=_status(target, needed, fit, a_high),
                )
                row["reason"] = (
                    _status_reason(row)
                    if len(fit.draws)
                    else (
                        "no bootstrap interval (resamples: 0)"
                        if row["status"] == "above the fitted plateau"
                        else _status_reason(row)
                    )
                )
            rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "model",
            "backbone",
            "target",
            "runs",
            "status",
            "images",
            "images_median",
            "images_low",
            "images_high",
            "plateau",
            "plateau_low",
            "plateau_high",
            "largest_size",
            "reason",
        ],
    )


def _status(target, needed, fit, a_high) -> str:
    if np.isfinite(a_high) and target > a_high:
        return "not reachable"
    if not np.isfinite(needed):
        return "above the fitted plateau"
    if needed > EXTRAPOLATION * fit.largest:
        return "beyond the data"
    return "trained range" if needed <= fit.largest else "extrapolated"


def _status_reason(row) -> str:
    level = f"{100 * LEVEL:g} %"
    return {
        "not reachable": f"the target lies above the plateau's {level} interval",
        "above the fitted plateau": f"the fitted plateau is below the target, its {level} interval is not",
        "beyond the data": f"more than {EXTRAPOLATION} x the largest trained size",
        "extrapolated": "above the largest trained size",
    }.get(row["status"], "")


def fits_table(fits: list[CurveFit]) -> pd.DataFrame:
    """One row per backbone: a, b, c with their bootstrap intervals, how the fit went."""
    rows = []
    for fit in fits:
        row = {
            "model": fit.model,
            "backbone": fit.backbone,
            "status": fit.status,
            "reason": fit.reason,
            "runs": fit.n_runs,
            "sizes": fit.n_sizes,
            "largest_size": fit.largest,
            "a": fit.a,
            "b": fit.b,
            "c": fit.c,
            "rmse": fit.rmse,
            "nfev": fit.nfev,
            "resamples": fit.resamples,
            "resamples_failed": fit.failed,
        }
        for k, name in enumerate("abc"):
            _, low, high = _quantiles(fit.draws[:, k]) if fit.fitted else (np.nan,) * 3
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        rows.append(row)
    cols = [
        "model",
        "backbone",
        "status",
        "reason",
        "runs",
        "sizes",
        "largest_size",
        "a",
        "a_low",
        "a_high",
        "b",
        "b_low",
        "b_high",
        "c",
        "c_low",
        "c_high",
        "rmse",
        "nfev",
        "resamples",
        "resamples_failed",
    ]
    return pd.DataFrame(rows, columns=cols)


def curves_table(fits: list[CurveFit]) -> pd.DataFrame:
    """Each fitted curve on a log grid from the smallest trained size to EXTRAPOLATION x the
    largest, with its pointwise bootstrap band; `extrapolated` beyond the largest size."""
    rows = []
    tail = (1 - LEVEL) / 2
    for fit in fits:
        if not fit.fitted:
            continue
        grid = np.geomspace(fit.points.sizes.min(), EXTRAPOLATION * fit.largest, CURVE_POINTS)
        grid = np.unique(np.concatenate([grid, fit.points.sizes]))
        dice = curve(grid, fit.a, fit.b, fit.c)
        if len(fit.draws):
            band = np.array([curve(grid, *theta) for theta in fit.draws])
            low, high = np.quantile(band, [tail, 1 - tail], axis=0, method="inverted_cdf")
        else:
            low = high = np.full_like(grid, np.nan)
        rows.append(
            pd.DataFrame(
                {
                    "model": fit.model,
                    "backbone": fit.backbone,
                    "size": grid,
                    "dice": dice,
                    "low": low,
                    "high": high,
                    "extrapolated": grid > fit.largest,
                }
            )
        )
    if not rows:
        return pd.DataFrame(columns=["model", "backbone", "size", "dice", "low", "high", "extrapolated"])
    return pd.concat(rows, ignore_index=True)


def crossings_table(fits: list[CurveFit]) -> pd.DataFrame:
    """Every size, between the smallest trained size and EXTRAPOLATION x the largest, where
    two fitted curves cross: which model leads above it (`overtakes`) and below it, and
    whether the crossing lies inside the trained range."""
    from scipy.optimize import brentq

    done = [f for f in fits if f.fitted]
    rows = []
    for i, one in enumerate(done):
        for two in done[i + 1 :]:
            lo = min(one.points.sizes.min(), two.points.sizes.min())
            top = max(one.largest, two.largest)

            def gap(logn, one=one, two=two):
                return float(curve(np.exp(logn), one.a, one.b, one.c) - curve(np.exp(logn), two.a, two.b, two.c))

            grid = np.linspace(math.log(lo), math.log(EXTRAPOLATION * top), 400)
            values = np.array([gap(g) for g in grid])
            for k in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
                n = math.exp(brentq(gap, grid[k], grid[k + 1], xtol=1e-10))
                after = gap(math.log(n) + 1e-3)
                leader, other = (one, two) if after > 0 else (two, one)
                rows.append(
                    {
                        "overtakes": leader.model,
                        "overtaken": other.model,
                        "size": n,
                        "dice": float(curve(n, one.a, one.b, one.c)),
                        "inside_trained_range": bool(lo <= n <= top),
                    }
                )
    return pd.DataFrame(rows, columns=["overtakes", "overtaken", "size", "dice", "inside_trained_range"])


def backtest_table(data: pd.DataFrame, ols_data: pd.DataFrame, ols_formula: str = PAPER_OLS) -> pd.DataFrame:
    """Refit without the largest trained size (and, with at least five sizes, without the two
    largest), predict each held-out size's mean DICE per backbone, and set the curve's error
    beside the OLS's (refitted on the same reduced table, `analysis.linear.fit_ols` and
    `analysis.predict.ols_predictions`). `data` holds the runs the curves use, `ols_data` every run
    (the model frame). Errors are predicted - observed, observed being the mean of the size's
    runs. A backtest that cannot run has one row per backbone saying why."""
    # statsmodels only here, when the backtest runs: the curves need none of it
    from unetcap.analysis.linear import fit_ols
    from unetcap.analysis.predict import ols_predictions

    sizes = sorted(int(s) for s in ols_data["size"].unique())
    backbones = [b for b in FIGURE_ORDER if b in set(ols_data["backbone"])]
    rows = []
    for held in (1, 2):
        if held == 2 and len(sizes) < 5:
            continue
        kept, out = sizes[:-held], sizes[-held:]
        if len(kept) < MIN_SIZES:
            reason = (
                f"not run: without the {'two largest sizes' if held == 2 else 'largest size'} "
                f"{_sizes_text(kept)} left to fit, the curve needs at least {MIN_SIZES}"
            )
            rows += [_backtest_row(b, held, np.nan, reason) for b in backbones]
            continue
        reduced = data[data["size"].isin(kept)]
        ols_reduced = ols_data[ols_data["size"].isin(kept)].reset_index(drop=True)
        try:
            ols = fit_ols(ols_reduced, ols_formula)
            ols_pred = ols_predictions(ols, ols_reduced, out)[0].set_index(["backbone", "size"])["predicted"]
            ols_reason = ""
        except UnetcapError as err:
            ols_pred, ols_reason = None, f"OLS not fitted: {err}"
        for backbone in backbones:
            block = reduced[reduced["backbone"] == backbone]
            fit = fit_curve(block["DICE"], block["size"], backbone, resamples=0)
            for size in out:
                row = _backtest_row(backbone, held, size, fit.reason if not fit.fitted else ols_reason)
                if not fit.fitted:
                    row["status"] = f"{fit.status}: {fit.reason}"
                observed = data.loc[(data["backbone"] == backbone) & (data["size"] == size), "DICE"]
                ols_observed = ols_data.loc[(ols_data["backbone"] == backbone) & (ols_data["size"] == size), "DICE"]
                row.update(
                    observed=observed.mean() if len(observed) else np.nan,
                    ols_observed=ols_observed.mean() if len(ols_observed) else np.nan,
                )
                if fit.fitted:
                    row["predicted"] = float(curve(size, fit.a, fit.b, fit.c))
                if ols_pred is not None:
                    row["ols_predicted"] = float(ols_pred.get((backbone, size), np.nan))
                row["error"] = row["predicted"] - row["observed"]
                row["ols_error"] = row["ols_predicted"] - row["ols_observed"]
                rows.append(row)
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS)


BACKTEST_COLUMNS = [
    "model",
    "backbone",
    "held_out",
    "size",
    "status",
    "observed",
    "predicted",
    "error",
    "ols_observed",
    "ols_predicted",
    "ols_error",
]


def _backtest_row(backbone, held, size, reason) -> dict:
    return {
        "model": BACKBONES[backbone].short,
        "backbone": backbone,
        "held_out": held,
        "size": size,
        "status": reason or "run",
        "observed": np.nan,
        "predicted": np.nan,
        "error": np.nan,
        "ols_observed": np.nan,
        "ols_predicted": np.nan,
        "ols_error": np.nan,
    }


# ---------------------------------------------------------------------------------------
# Everything, computed and written
# ---------------------------------------------------------------------------------------


def analyse_sample_size(
    metrics: pd.DataFrame,
    metric: str = "test_dice",
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
    frame = model_frame(metrics, metric)
    data = select_runs(metrics, metric, runs)
    started = time.perf_counter()
    fits = fit_curves(data, int(resamples), seed)
    seconds = time.perf_counter() - started
    log.info("%d learning curves, %d resamples each, fitted in %.1f s", len(fits), resamples, seconds)
    notes = [
        f"Curve: {CURVE}, least squares on the mean {metric} of each size weighted by its number of "
        "runs (as on the runs themselves); N scaled by the largest trained size inside the fit.",
        _runs_note(runs, data),
        (
            f"Intervals: {100 * LEVEL:g} % percentile bootstrap, {resamples} resamples of the runs within "
            f"each size (seed {seed}), each resampled mean inflated by sqrt(n / (n - 1))."
        ),
        (
            f"Beyond the data: more than {EXTRAPOLATION} x the largest trained size. Not reachable: the "
            f"target lies above the plateau's {100 * LEVEL:g} % interval."
        ),
    ]
    unfitted = [f for f in fits if not f.fitted]
    if len(fits) > 1 and len(unfitted) == len(fits) and len({(f.status, f.reason) for f in fits}) == 1:
        notes.append(f"Every model {fits[0].status}: {fits[0].reason}.")
        unfitted = []
    for fit in fits:
        notes += fit.notes
    notes += [f"{fit.model}: {fit.status}: {fit.reason}." for fit in unfitted]
    return {
        "fits": fits,
        "images": images_table(fits, targets, runs),
        "fit_table": fits_table(fits),
        "curves": curves_table(fits),
        "crossings": crossings_table(fits),
        "backtest": backtest_table(data, frame.data, ols_formula),
        "notes": notes,
        "metric": metric,
        "runs": runs,
        "seconds": seconds,
    }


def _runs_note(runs: str, data: pd.DataFrame) -> str:
    if runs == "all":
        return (
            f"Runs: all {len(data)} runs of the lr x reg grid, the same runs as the OLS and the HSD "
            "groups: no choice on any metric, and the backtest compares like with like."
        )
    return (
        f"Runs: per model and size, the (lr, reg) with the highest mean validation DICE ({len(data)} runs): "
        "the choice is never made on the test set."
    )


def write_sample_size(
    metrics_path,
    outputs: Mapping[str, object],
    metric: str = "test_dice",
    targets=TARGETS,
    resamples: int = RESAMPLES,
    runs: str = "all",
    seed: int = 0,
    ols_formula: str = PAPER_OLS,
) -> list[Path]:
    """Read the merged metrics table and write each output to the path `outputs` gives it
    (the `sample_size` rule's named outputs: table_csv, table_md, table_html, fits,
    crossings, backtest, curves), each atomically; the same table and settings give
    byte-identical files. Raises UnetcapError naming every output missing or unknown."""
    result = analyse_sample_size(read_metrics(metrics_path), metric, targets, resamples, runs, seed, ols_formula)
    tables = format_sample_size(result)
    plan = plan_lines(result["images"])
    texts = {
        "table_csv": csv_text(result["images"]),
        "fits": csv_text(result["fit_table"]),
        "crossings": csv_text(result["crossings"]),
        "backtest": csv_text(result["backtest"]),
        "curves": csv_text(result["curves"]),
        "table_md": "# How many images do I need?\n\n"
        + "".join(f"{p}  \n" for p in plan)
        + "\n"
        + "\n".join(to_markdown(t) for t in tables)
        + "".join(f"\n- {n}" for n in result["notes"])
        + "\n",
        "table_html": to_html(tables, plan, [f"Note: {n}" for n in result["notes"]]),
    }
    return write_outputs(texts, outputs, "sample_size")


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------


def fmt_images(n) -> str:
    """Images to two significant figures, with thousands separators; "∞" when infinite."""
    if n is None or not np.isfinite(n) and not np.isinf(n):
        return ""
    if np.isinf(n):
        return "∞"
    if n < 1:
        return "< 1"
    digits = max(0, int(math.floor(math.log10(n))) - 1)
    return f"{round(n, -digits):,.0f}"


def _interval(low, high) -> str:
    if not (np.isfinite(low) or np.isinf(low)):
        return ""
    return f"[{fmt_images(low)}-{fmt_images(high)}]"


def plan_lines(table: pd.DataFrame) -> list[str]:
    """The answer in words, one line per target (from sample_size.csv): "To reach DICE 0.85:
    B5 about 1,900 images [1,500-2,600], ...; V16 not reachable (plateau 0.83 [0.81-0.84])."
    Models that reach the target first come first."""
    if table.empty:
        return ["No model in the metrics table."]
    unfitted = table[table["status"].isin(["not fitted", "fit failed"])]
    if len(unfitted) == len(table) and unfitted["reason"].nunique() == 1:
        return [f"No learning curve was fitted: {unfitted['reason'].iloc[0]}."]
    order = {
        "trained range": 0,
        "extrapolated": 0,
        "beyond the data": 1,
        "above the fitted plateau": 2,
        "not reachable": 3,
        "fit failed": 4,
        "not fitted": 5,
    }
    lines = []
    for target, block in table.groupby("target", sort=True):
        block = block.assign(_rank=block["status"].map(order)).sort_values(["_rank", "images"], kind="stable")
        parts = []
        for r in block.itertuples():
            plateau = f"plateau {r.plateau:.2f}" + (
                f" [{r.plateau_low:.2f}-{r.plateau_high:.2f}]" if np.isfinite(r.plateau_low) else ""
            )
            if r.status in ("trained range", "extrapolated"):
                parts.append(
                    f"{r.model} about {fmt_images(r.images)} images {_interval(r.images_low, r.images_high)}"
                    + (" (extrapolated)" if r.status == "extrapolated" else "")
                )
            elif r.status == "beyond the data":
                parts.append(
                    f"{r.model} beyond the data (about {fmt_images(r.images)}, more than "
                    f"{EXTRAPOLATION} x the largest size)"
                )
            elif r.status == "above the fitted plateau":
                parts.append(f"{r.model} perhaps never (fitted {plateau})")
            elif r.status == "not reachable":
                parts.append(f"{r.model} not reachable ({plateau})")
            else:
                parts.append(f"{r.model} {r.status}: {r.reason}")
        lines.append(f"To reach DICE {target:.2f}: " + "; ".join(parts) + ".")
    return lines


def format_sample_size(result: dict) -> list[Formatted]:
    """The images needed per model and target, the fits, the crossings and the backtest."""
    level = f"{100 * LEVEL:g} %"
    images = result["images"]
    rows = []
    for model, block in images.groupby("model", sort=False):
        if block["status"].iloc[0] in ("not fitted", "fit failed"):  # one row says why, for every target
            rows.append([model, "all", "", "", "", "", "", f"{block['status'].iloc[0]}: {block['reason'].iloc[0]}"])
            continue
        rows += [
            [
                r.model,
                f"{r.target:.2f}",
                fmt_images(r.images),
                fmt_images(r.images_median),
                _interval(r.images_low, r.images_high),
                fmt_num(r.plateau, 3),
                f"[{r.plateau_low:.3f}, {r.plateau_high:.3f}]" if np.isfinite(r.plateau_low) else "",
                r.status + (f": {r.reason}" if r.reason else ""),
            ]
            for r in block.itertuples()
        ]
    tables = [
        Formatted(
            f"Images needed to reach a target {result['metric']} (runs: {result['runs']})",
            [
                "Model",
                "Target",
                "Images",
                "Bootstrap median",
                f"{level} interval",
                "Plateau a",
                f"Plateau {level}",
                "Status",
            ],
            rows,
            [
                f"Images N* = (b / (a - T))^(1/c) from the full fit; ∞ where the plateau a is not "
                f"above the target. Trained range: N* at most the largest trained size; extrapolated: "
                f"up to {EXTRAPOLATION} x it."
            ],
            "lrrrlrll",
        )
    ]
    fits = result["fit_table"]
    f_rows = []
    for r in fits.itertuples():

        def cell(name, digits=4, r=r):
            value, low, high = getattr(r, name), getattr(r, f"{name}_low"), getattr(r, f"{name}_high")
            if not np.isfinite(value):
                return ""
            return fmt_num(value, digits) + (
                f" [{fmt_num(low, digits)}, {fmt_num(high, digits)}]" if np.isfinite(low) else ""
            )

        f_rows.append(
            [
                r.model,
                r.status + (f": {r.reason}" if r.reason else ""),
                str(r.runs),
                str(r.sizes),
                cell("a"),
                cell("b"),
                cell("c"),
                fmt_num(r.rmse),
                f"{r.resamples - r.resamples_failed}/{r.resamples}" if r.resamples else "",
            ]
        )
    tables.append(
        Formatted(
            f"Learning curves {CURVE} per model, {level} bootstrap intervals",
            ["Model", "Fit", "Runs", "Sizes", "a (plateau)", "b", "c", "RMSE of the means", "Resamples fitted"],
            f_rows,
            ["RMSE: root mean square distance of the curve to the mean DICE of each size."],
            "llrrllllr",
        )
    )
    crossings = result["crossings"]
    c_rows = [
        [
            r.overtakes,
            r.overtaken,
            fmt_images(r.size),
            fmt_num(r.dice, 3),
            "yes" if r.inside_trained_range else "no (extrapolated)",
        ]
        for r in crossings.itertuples()
    ]
    if c_rows or any(f.fitted for f in result["fits"]):
        tables.append(
            Formatted(
                "Where one model overtakes another (fitted curves cross)",
                ["Overtakes", "Overtaken", "At images", "DICE there", "Inside the trained range"],
                c_rows,
                [
                    f"No crossing between the smallest trained size and {EXTRAPOLATION} x the largest."
                    if not c_rows
                    else "Above the size, the first model's curve is the higher one."
                ],
                "llrrl",
            )
        )
    back = result["backtest"]
    b_rows = []
    for held, block in back.groupby("held_out", sort=True):
        if block["status"].str.startswith("not run").all() and block["status"].nunique() == 1:
            b_rows.append(["all", str(held), "", block["status"].iloc[0], "", "", "", "", ""])
            continue
        b_rows += [
            [
                r.model,
                str(r.held_out),
                "" if not np.isfinite(r.size) else f"{int(r.size):,}",
                r.status,
                fmt_num(r.observed),
                fmt_num(r.predicted),
                fmt_num(r.error),
                fmt_num(r.ols_predicted),
                fmt_num(r.ols_error),
            ]
            for r in block.itertuples()
        ]
    summary = []
    ok = back.dropna(subset=["error", "ols_error"])
    for held, block in ok.groupby("held_out"):
        summary.append(
            f"Held out {held}: mean absolute error {block['error'].abs().mean():.4f} (curve) against "
            f"{block['ols_error'].abs().mean():.4f} (OLS)."
        )
    tables.append(
        Formatted(
            "Backtest: refit without the largest size(s), predict their mean DICE",
            ["Model", "Sizes held out", "Size", "Status", "Observed", "Curve", "Curve error", "OLS", "OLS error"],
            b_rows,
            [
                "Error = predicted - observed mean of the size's runs; the OLS is refitted on the same "
                "reduced table and predicts the mean over the lr x reg grid."
            ]
            + (
                [
                    "With runs: best the curve predicts the mean of the best lr and reg (observed), the OLS "
                    "the mean of every run (its own observed value, in the CSV)."
                ]
                if result["runs"] == "best"
                else []
            )
            + summary,
            "lrrlrrrrr",
        )
    )
    return tables
