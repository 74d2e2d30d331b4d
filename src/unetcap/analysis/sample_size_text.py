"""The sample-size analysis in words and tables: one sentence per model, the images needed,
the curve families against the baselines, the fits and the backtest; and the rule's files
(`write_sample_size`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.backtest import LEVEL, MIN_FIT
from unetcap.analysis.curves import FAMILIES
from unetcap.analysis.formula import PAPER_OLS
from unetcap.analysis.render import Formatted, csv_text, fmt_num, to_html, to_markdown, write_outputs
from unetcap.analysis.sample_size import (
    HORIZON,
    RESAMPLES,
    TARGETS,
    analyse_sample_size,
    crossings_table,
    curves_table,
    fits_table,
    images_table,
)
from unetcap.analysis.table import read_metrics

PERCENT = f"{100 * LEVEL:g} %"


def fmt_images(n) -> str:
    """Images to two significant figures, with thousands separators."""
    if n is None or not np.isfinite(n):
        return ""
    if n < 1:
        return "< 1"
    digits = max(0, int(math.floor(math.log10(n))) - 1)
    return f"{round(n, -digits):,.0f}"


def _interval(row) -> str:
    low = fmt_images(row.images_low)
    if not low:
        return ""
    if row.open:
        return f"{low} to more than {row.horizon:,.0f}"
    if not np.isfinite(row.images_high):
        return ""
    return f"{low}-{fmt_images(row.images_high)}"


def _clause(row) -> str:
    """One target's part of a model's sentence."""
    head = f"DICE {row.target:.2f}"
    if row.status in ("trained range", "extrapolated"):
        where = "within the trained range" if row.status == "trained range" else "beyond the trained range"
        interval = _interval(row)
        return (
            f"{head}: label about {fmt_images(row.images)} images"
            + (f" ({PERCENT}: {interval})" if interval else " (no interval: resamples 0)")
            + f", {where}"
        )
    if row.status == "reached at the smallest size":
        return f"{head}: already reached at the smallest size trained ({fmt_images(row.images)} images)"
    if row.status == "not reachable":
        return (
            f"{head}: not reachable (the curve levels off at {row.plateau:.2f}, {PERCENT} up to {row.plateau_high:.2f})"
        )
    return f"{head}: not within {row.horizon:,.0f} images, the most these data support"


def plan_lines(table: pd.DataFrame) -> list[str]:
    """The answer, one sentence per model (from sample_size.csv): "R18 (trained up to 1,200
    images; curve: ...): to reach DICE 0.80, label about 1,900 images (95 %: 1,400-2,700),
    beyond the trained range; ..."."""
    if table.empty:
        return ["No model in the metrics table."]
    unanswered = table[table["status"] == "not answered"]
    if len(unanswered) == len(table) and table["reason"].nunique() == 1:
        return [f"No learning curve answers: {table['reason'].iloc[0]}."]
    lines = []
    for model, block in table.groupby("model", sort=False):
        first = block.iloc[0]
        if first["status"] == "not answered":
            lines.append(f"{model}: no answer: {first['reason']}.")
            continue
        family = FAMILIES[first["family"]]
        clauses = "; ".join(_clause(row) for row in block.itertuples())
        bound = (
            " Its plateau is not identified by these sizes (the fit ends on the bound 1): read forecasts"
            " beyond the trained range with care."
            if "not identified" in str(first["plateau_note"])
            else ""
        )
        lines.append(
            f"{model} (this study trained up to {fmt_images(first['largest_size'])} images; curve: {family.label}, "
            f"chosen by backtest): {clauses}.{bound}"
        )
    return lines


def format_images(result: dict, table: pd.DataFrame) -> Formatted:
    rows = []
    for model, block in table.groupby("model", sort=False):
        if block["status"].iloc[0] == "not answered":
            rows.append([model, "all", "", "", "", "", f"not answered: {block['reason'].iloc[0]}"])
            continue
        for r in block.itertuples():
            smallest = r.status == "reached at the smallest size"
            rows.append(
                [
                    r.model,
                    f"{r.target:.2f}",
                    f"{fmt_images(r.images)} or fewer" if smallest else fmt_images(r.images),
                    "" if smallest else _interval(r),
                    _plateau_cell(r),
                    r.status,
                    r.reason,
                ]
            )
    family = FAMILIES.get(result["chosen"])
    return Formatted(
        f"Images needed to reach a target {result['metric']} (runs: {result['runs']})",
        ["Model", "Target", "Images", f"{PERCENT} interval", "Plateau", "Status", "Why"],
        rows,
        [
            (
                f"Curve: {family.label}, {family.formula}, chosen by the leave-largest-out backtest; its "
                f"{PERCENT} band widened x{result['widening']:.2f} by the backtests."
                if family
                else "No curve family was chosen."
            ),
            f"Forecasts stop at {HORIZON} x the largest trained size: beyond it the answer is said in words.",
        ],
        "lrrrrll",
    )


def _plateau_cell(r) -> str:
    if r.plateau_note and "never" in r.plateau_note:
        return "none"
    if not np.isfinite(r.plateau):
        return ""
    if r.plateau_note:
        return f"{r.plateau_note} ({r.plateau:.3f})"
    return f"{r.plateau:.3f} [{r.plateau_low:.3f}, {r.plateau_high:.3f}]"


def format_families(result: dict) -> Formatted:
    rows = []
    for r in result["families"].itertuples():
        rows.append(
            [
                r.method + (" (chosen)" if r.chosen else ""),
                r.formula,
                fmt_num(r.mae_largest),
                fmt_num(r.rmse_largest),
                str(r.cases_largest),
                fmt_num(r.mae_all),
                str(r.cases_all),
                _share(r.coverage_nominal),
                fmt_num(r.widening, 3) if np.isfinite(r.widening) else "",
                _share(r.coverage_widened_loo),
            ]
        )
    return Formatted(
        "Which curve: every family and two baselines, judged on sizes their fit did not see",
        [
            "Method",
            "Form",
            "Mean abs. error, largest held out",
            "RMSE",
            "Cases",
            "Mean abs. error, all cuts",
            "Cases",
            f"In the {PERCENT} band",
            "Widening k",
            "In the widened band (left out)",
        ],
        rows,
        [
            f"Backtest: each curve refitted on the {MIN_FIT} or more smallest sizes predicts every larger size's mean "
            "DICE (error = predicted - observed). Largest held out: fitted on all sizes but the largest. The "
            "family with the smallest mean absolute error there, pooled over the models, answers.",
            "Widening: k = max(1, t(0.975, n) sqrt(mean z^2)), z a case's error in half-widths of its band; "
            "'left out': each case judged by the k of the others.",
        ],
        "llrrrrrrrr",
    )


def _share(x) -> str:
    return f"{100 * x:.0f} %" if np.isfinite(x) else ""


def format_fits(result: dict, fits: pd.DataFrame) -> Formatted:
    rows = []
    for r in fits.itertuples():
        theta = f"{r.theta_name} = {_cell(r, 'theta')}" if r.theta_name else ""
        a = _cell(r, "a") if not r.on_bound.startswith("plateau at its bound") else f"bound ({r.on_bound})"
        rows.append(
            [
                r.family + (" (chosen)" if r.chosen else ""),
                r.model,
                a,
                _cell(r, "b") if not r.on_bound.startswith("flat") else f"bound ({r.on_bound})",
                theta,
                fmt_num(r.rmse),
                fmt_num(r.mae_largest),
                r.on_bound or "inside its bounds",
            ]
        )
    return Formatted(
        f"Curve fits per family and model, {PERCENT} bootstrap intervals",
        ["Family", "Model", "a", "b", "Shape", "RMSE of the means", "Mean abs. error, largest held out", "Bounds"],
        rows,
        [
            "A parameter that ends on a bound is printed as the bound, not as an estimate: a plateau at 1 is not "
            "identified by the trained sizes. N in the fits is scaled by the largest trained size."
        ],
        "llllrrrl",
    )


def _cell(r, name: str) -> str:
    value, low, high = getattr(r, name), getattr(r, f"{name}_low"), getattr(r, f"{name}_high")
    if not np.isfinite(value):
        return ""
    return fmt_num(value, 4) + (f" [{fmt_num(low, 4)}, {fmt_num(high, 4)}]" if np.isfinite(low) else "")


def format_backtest(result: dict) -> Formatted:
    table = result["backtest"]
    names = [*FAMILIES, "ols", "carry_forward"]
    rows = [
        [
            r["model"],
            f"{int(r['fitted_sizes'])} (to {int(r['largest_fitted']):,})",
            f"{int(r['size']):,}",
            fmt_num(r["observed"]),
            *(fmt_num(r[f"{n}_error"]) for n in names),
        ]
        for _, r in table.iterrows()
    ]
    return Formatted(
        "Backtest: each case's error (predicted - observed mean DICE)",
        ["Model", "Fitted sizes", "Held-out size", "Observed", *names],
        rows,
        ["The OLS is refitted on the same runs and predicts the mean over the lr x reg grid."],
        "lrrr" + "r" * len(names),
    )


def format_crossings(crossings: pd.DataFrame) -> Formatted:
    rows = [
        [r.overtakes, r.overtaken, fmt_images(r.size), fmt_num(r.dice, 3), "yes" if r.inside_trained_range else "no"]
        for r in crossings.itertuples()
    ]
    return Formatted(
        "Where one model's curve overtakes another's",
        ["Overtakes", "Overtaken", "At images", "DICE there", "Inside the trained range"],
        rows,
        ["No crossing within the horizon." if not rows else "Above the size, the first model's curve is the higher."],
        "llrrl",
    )


def notes(result: dict) -> list[str]:
    units = result["units"]
    out = list(result["notes"])
    out.append(
        f"Runs: {len(units.runs)} ({result['runs']}), {len(units.backbones)} model(s), sizes "
        + ", ".join(f"{int(s):,}" for s in units.sizes)
        + "; training sets per size "
        + ", ".join(str(n) for n in units.units_per_size())
        + "."
    )
    if result["reason"]:
        out.append(f"No curve answers: {result['reason']}.")
    for backbone, reason in result["model_reasons"].items():
        out.append(f"{backbone}: not answered: {reason}.")
    return out


def write_sample_size(
    metrics_path,
    outputs: Mapping[str, object],
    holdout_path=None,
    metric: str = "holdout_dice",
    targets=TARGETS,
    resamples: int = RESAMPLES,
    runs: str = "all",
    seed: int = 0,
    ols_formula: str = PAPER_OLS,
) -> list[Path]:
    """Read the merged tables and write each output to the path `outputs` gives it (the
    `sample_size` rule's named outputs), each atomically; the same tables and settings give
    byte-identical files. Raises UnetcapError naming every output missing or unknown."""
    holdout = None
    if holdout_path is not None and metric == "holdout_dice":
        path = Path(holdout_path)
        if not path.is_file():
            raise UnetcapError(f"{path}: missing; the merge rule writes it")
        holdout = pd.read_csv(path)
    result = analyse_sample_size(
        read_metrics(metrics_path), holdout, metric, targets, resamples, runs, seed, ols_formula
    )
    return write_outputs(render_sample_size(result), outputs, "sample_size")


def render_sample_size(result: dict) -> dict[str, str]:
    """The text of every output, by the rule's name for it."""
    images = images_table(result)
    fits = fits_table(result)
    curves = curves_table(result)
    crossings = crossings_table(curves)
    plan = plan_lines(images)
    tables = [format_images(result, images)]
    if len(result["backtest"]):
        tables += [format_families(result), format_fits(result, fits), format_backtest(result)]
    tables.append(format_crossings(crossings))
    text = notes(result)
    return {
        "table_csv": csv_text(images),
        "families": csv_text(result["families"]),
        "fits": csv_text(fits),
        "crossings": csv_text(crossings),
        "backtest": csv_text(result["backtest"]),
        "curves": csv_text(curves),
        "table_md": "# How many images do I need?\n\n"
        + "".join(f"{p}\n\n" for p in plan)
        + "\n".join(to_markdown(t) for t in tables)
        + "".join(f"\n- {n}" for n in text)
        + "\n",
        "table_html": to_html(tables, plan, [f"Note: {n}" for n in text]),
    }
