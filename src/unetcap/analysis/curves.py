"""Learning-curve families, DICE(N) against dataset size N, fitted to the mean DICE of each
trained size, for many bootstrap replicates at once (numpy only).

Every family is linear in two parameters once a third (or none) is fixed,

    DICE(N) = a - b g(x; theta),   x = N / largest trained size,

so each is fitted exactly: for every theta on a fine grid the weighted least squares (a, b)
in closed form, within the bounds, then the theta of least cost (the same for every model
in a shared family). No optimiser that may stop early or wander, and a fit on a bound is
known to be on it.

- `ipl`: the inverse power law a - b N^(-c) (Figueroa et al. 2012; Cho et al. 2015),
  0 <= a <= 1 (the plateau), b >= 0, c on [C_GRID[0], C_GRID[-1]].
- `ipl_shared`: the same with one exponent c shared by every model, each with its own a
  and b (Hestness et al. 2017: architectures share the exponent and differ in offset).
- `loglinear`: a + b log N, the paper's OLS's form per model; no plateau, never levels off.
- `exp_plateau`: a - b exp(-N / d), a saturating form that levels off faster than the
  power law, 0 <= a <= 1, b >= 0, d on D_GRID (in units of the largest trained size).

Weights are the runs (or fold units) behind each size's mean, as least squares on the runs
themselves would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

C_GRID = np.geomspace(0.02, 3.0, 160)  # power-law exponents
D_GRID = np.geomspace(0.01, 10.0, 160)  # exp_plateau scales, in largest trained sizes
A_BOUNDS = (0.0, 1.0)  # a plateau is a DICE


@dataclass(frozen=True)
class Family:
    """A curve family: its name, the grid of its nonlinear parameter (None: linear), whether
    the grid parameter is shared between models, and whether a is a plateau in [0, 1]."""

    name: str
    label: str
    formula: str
    grid: np.ndarray | None
    shared: bool
    saturating: bool

    def basis(self, x: np.ndarray) -> np.ndarray:
        """g(x; theta) for every grid value: (len(grid) or 1, len(x))."""
        x = np.asarray(x, dtype=float)
        if self.name in ("ipl", "ipl_shared"):
            return np.power(x[None, :], -self.grid[:, None])
        if self.name == "exp_plateau":
            return np.exp(-x[None, :] / self.grid[:, None])
        return -np.log(x)[None, :]  # loglinear: a + b log x = a - b (-log x)

    @property
    def theta_name(self) -> str:
        return {"ipl": "c", "ipl_shared": "c", "exp_plateau": "d"}.get(self.name, "")

    @property
    def parameters(self) -> int:
        """Free parameters per model (a shared exponent counted once per model set)."""
        return 2 if self.grid is None or self.shared else 3


FAMILIES = {
    f.name: f
    for f in (
        Family("ipl", "inverse power law", "a - b N^(-c)", C_GRID, False, True),
        Family("ipl_shared", "inverse power law, shared exponent", "a_m - b_m N^(-c)", C_GRID, True, True),
        Family("loglinear", "log-linear (the OLS's form)", "a + b log N", None, False, False),
        Family("exp_plateau", "exponential plateau", "a - b exp(-N / d)", D_GRID, False, True),
    )
}


@dataclass
class Fit:
    """Fits of one family to many replicates of M models' size means.

    a, b, theta: (R, M); theta is NaN for loglinear. cost: (R, M) weighted squared error.
    `on_bound`: (R, M) text, "" when the fit is inside its bounds, else which bound
    (the plateau at 1, the slope at 0, the exponent at an end of its grid)."""

    family: Family
    scale: float
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    cost: np.ndarray
    on_bound: np.ndarray

    def predict(self, sizes) -> np.ndarray:
        """(R, M, len(sizes)) DICE of each replicate's curve."""
        x = np.asarray(sizes, dtype=float) / self.scale
        return self.a[..., None] - self.b[..., None] * _g(self.family, x, self.theta)


def _g(family: Family, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """g(x; theta) for (R, M) thetas: (R, M, len(x))."""
    if family.name in ("ipl", "ipl_shared"):
        return np.power(x, -theta[..., None])
    if family.name == "exp_plateau":
        return np.exp(-x / theta[..., None])
    return np.broadcast_to(-np.log(x), (*theta.shape, len(x)))


def _linear(g: np.ndarray, y: np.ndarray, w: np.ndarray, bounded: bool):
    """Weighted least squares of y ~ a - b g per row: g (..., K), y (..., K), w (..., K)
    summing to 1 over K. With `bounded`, 0 <= a <= 1 and b >= 0: the interior solution when it is inside,
    else the best of the edges (a = 0, a = 1, b = 0). Returns a, b, cost, edge
    ("" inside; "a=1", "a=0", "b=0")."""
    gm, ym = (g * w).sum(-1), (y * w).sum(-1)
    gc, yc = g - gm[..., None], y - ym[..., None]
    sgg = (w * gc * gc).sum(-1)
    sgy = (w * gc * yc).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sgg > 0, sgy / sgg, 0.0)  # y = ym + slope (g - gm): b = -slope
    b = -slope
    a = ym + b * gm

    def cost(a_, b_):
        return (w * (y - a_[..., None] + b_[..., None] * g) ** 2).sum(-1)

    best = cost(a, b)
    edge = np.full(a.shape, "", dtype=object)
    if not bounded:
        return a, b, best, edge
    inside = (a >= A_BOUNDS[0]) & (a <= A_BOUNDS[1]) & (b >= 0)
    best = np.where(inside, best, np.inf)
    ggw = (w * g * g).sum(-1)
    candidates = []
    for a_fixed, name in ((A_BOUNDS[1], "a=1"), (A_BOUNDS[0], "a=0")):
        with np.errstate(divide="ignore", invalid="ignore"):
            b_edge = np.where(ggw > 0, (w * g * (a_fixed - y)).sum(-1) / ggw, 0.0)
        candidates.append((np.full(a.shape, a_fixed), np.maximum(b_edge, 0.0), name))
    candidates.append((np.clip(ym, *A_BOUNDS), np.zeros(a.shape), "b=0"))
    for a_c, b_c, name in candidates:
        c = cost(a_c, b_c)
        better = c < best - 1e-15
        a, b, best = np.where(better, a_c, a), np.where(better, b_c, b), np.where(better, c, best)
        edge = np.where(better, name, edge)
    return a, b, best, edge


def fit_family(family: Family, sizes, means: np.ndarray, weights, block: int = 128) -> Fit:
    """Fit `family` to means (R, M, K) of M models at K sizes in R replicates, weighted by
    `weights` (M, K): the runs behind each mean, 0 where a model has no run at a size (its
    mean may then be NaN). The scale is the largest size. Replicates are fitted `block` at
    a time (memory: block x M x grid x K)."""
    sizes = np.asarray(sizes, dtype=float)
    means = np.asarray(means, dtype=float)
    w = np.broadcast_to(np.asarray(weights, dtype=float), means.shape[1:])
    w = w / w.sum(-1, keepdims=True)
    scale = float(sizes.max())
    parts = [
        _fit_block(family, sizes / scale, np.nan_to_num(means[start : start + block]), w)
        for start in range(0, len(means), block)
    ]
    a, b, theta, cost, on_bound = (np.concatenate([p[k] for p in parts]) for k in range(5))
    return Fit(family, scale, a, b, theta, cost, on_bound)


def _fit_block(family: Family, x: np.ndarray, means: np.ndarray, w: np.ndarray):
    basis = family.basis(x)  # (T, K)
    g = np.broadcast_to(basis, (*means.shape[:2], *basis.shape))  # (R, M, T, K)
    y = np.broadcast_to(means[:, :, None, :], g.shape)
    a, b, cost, edge = _linear(g, y, w[None, :, None, :], family.saturating)  # (R, M, T)
    if family.grid is None:
        pick = np.zeros(a.shape[:2], dtype=int)
        theta = np.full(a.shape[:2], np.nan)
    elif family.shared:
        pick = np.broadcast_to(np.argmin(cost.sum(axis=1), axis=-1)[:, None], a.shape[:2])
        theta = family.grid[pick]
    else:
        pick = np.argmin(cost, axis=-1)
        theta = family.grid[pick]
    take = lambda v: np.take_along_axis(v, pick[..., None], axis=-1)[..., 0]  # noqa: E731
    on_bound = take(edge).astype(object)
    if family.grid is not None:
        name = family.theta_name
        at_end = np.where(pick == 0, f"{name} at its grid's low end", "")
        at_end = np.where(pick == len(family.grid) - 1, f"{name} at its grid's high end", at_end).astype(object)
        on_bound = np.where(on_bound == "", at_end, np.where(at_end == "", on_bound, on_bound + ", " + at_end))
    b = take(b)
    if family.saturating:  # no slope: the shape parameter means nothing, the flat line is the fit
        on_bound = np.where(b <= 1e-12, "b=0", on_bound)
    return take(a), b, theta, take(cost), on_bound


def bound_text(edge: str) -> str:
    """What a fit on a bound means, in words."""
    return {
        "a=1": "plateau at its bound 1: not identified",
        "a=0": "plateau at its bound 0",
        "b=0": "flat: slope at its bound 0",
    }.get(edge, edge)


def sizes_reaching(fit_curves: np.ndarray, grid: np.ndarray, target: float) -> np.ndarray:
    """For curves (..., len(grid)) on an increasing size grid, the first size at which each
    reaches `target` (log-linear interpolation between grid points); NaN when none does."""
    above = fit_curves >= target
    first = np.argmax(above, axis=-1)
    reached = above.any(axis=-1)
    out = np.full(first.shape, np.nan)
    logn = np.log(grid)
    idx = np.nonzero(reached)
    k = first[idx]
    values = np.full(k.shape, np.nan)
    at_start = k == 0
    values[at_start] = grid[0]
    j = ~at_start
    if j.any():
        y0 = fit_curves[idx][j, k[j] - 1]
        y1 = fit_curves[idx][j, k[j]]
        frac = np.where(y1 > y0, (target - y0) / np.where(y1 > y0, y1 - y0, 1.0), 1.0)
        values[j] = np.exp(logn[k[j] - 1] + frac * (logn[k[j]] - logn[k[j] - 1]))
    out[idx] = values
    return out
