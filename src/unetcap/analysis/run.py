"""The whole analysis (docs/design.md §11): every statistic of the merged metrics table
(`analyse`), rendered as the text of each output (`render_results`) and written to the paths
the `stats` rule names (`write_analysis`, `write_results`).

An output is addressed by the rule's name for it (`table1_csv`, `gam_md`, ...): the rule
decides where each file goes, the library writes exactly the outputs it is given and refuses
a name it does not know or one it is not given, so the two cannot drift apart silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.anova import ANOVA_CAPTION, anova_table, format_anova
from unetcap.analysis.formula import PAPER_GLM, PAPER_OLS
from unetcap.analysis.gam import fit_gam, format_terms, gam_partial, gam_summary, term_table
from unetcap.analysis.hsd import format_hsd, tukey_hsd
from unetcap.analysis.linear import (
    AIC_CONVENTION,
    aic_table,
    coefficient_table,
    fit_glm,
    fit_ols,
    format_aic,
    format_glm,
    format_table1,
)
from unetcap.analysis.paper import format_paper, paper_comparison
from unetcap.analysis.predict import depth_contrasts, format_depth, ols_predictions, ranking_constant
from unetcap.analysis.recommend import format_which_model, which_model
from unetcap.analysis.render import csv_text, pre_html, to_html, to_latex, to_markdown, write_outputs
from unetcap.analysis.sample_size_text import plan_lines
from unetcap.analysis.table import model_frame, read_metrics

log = logging.getLogger(__name__)


def analyse(
    metrics: pd.DataFrame,
    metric: str = "test_dice",
    ols_formula: str = PAPER_OLS,
    glm_formula: str = PAPER_GLM,
    predict_sizes=(3000,),
    alpha: float = 0.05,
) -> dict:
    """Every statistic of the study, as data frames and text (no file is written)."""
    if not 0 < alpha < 1:
        raise UnetcapError(f"analysis.alpha: {alpha} is not between 0 and 1")
    frame = model_frame(metrics, metric)
    data = frame.data
    _check_dice_varies(data, metric)
    ols = fit_ols(data, ols_formula)
    glm = fit_glm(data, glm_formula)
    aic = aic_table(ols, glm)
    coef = coefficient_table(ols, alpha)
    glm_coef = coefficient_table(glm, alpha)
    anova = anova_table(ols)
    paper = paper_comparison(coef, anova)
    depth = depth_contrasts(ols, data, alpha)
    pairs, groups = tukey_hsd(data, alpha)
    predictions, design = ols_predictions(ols, data, predict_sizes, alpha)
    observed, absent = observed_cells(predictions, groups)
    which = which_model(groups, pairs, observed, design, ols, alpha)
    gam = fit_gam(data)
    log.info(
        "OLS AIC %.2f, GLM AIC %.2f, %d HSD groups, %d pairs",
        aic["aic"].iloc[0],
        aic["aic"].iloc[1],
        len(groups),
        len(pairs),
    )
    notes = frame.notes + ols.notes + [f"GLM: {n}" for n in glm.notes] + gam.notes + absent
    return {
        "frame": frame,
        "ols": ols,
        "glm": glm,
        "aic": aic,
        "coef": coef,
        "depth": depth,
        "paper": paper,
        "glm_coef": glm_coef,
        "anova": anova,
        "pairs": pairs,
        "groups": groups,
        "predictions": predictions,
        "which": which,
        "gam": gam,
        "gam_terms": term_table(gam),
        "gam_partial": gam_partial(gam, data, 1 - alpha),
        "notes": notes,
        "alpha": alpha,
        "constant_ranking": ranking_constant(predictions),
    }


def _check_dice_varies(data: pd.DataFrame, metric: str) -> None:
    """Raise UnetcapError when every analysed run has the same DICE: nothing is identified."""
    if data["DICE"].nunique() == 1:
        diverged = int((data["status"] != "ok").sum())
        why = "" if not diverged else ", all diverged" if diverged == len(data) else f", {diverged} of them diverged"
        raise UnetcapError(
            f"metrics table: all {len(data)} analysed runs have {metric} = {data['DICE'].iloc[0]:g}{why}: "
            "DICE does not vary, so no model (OLS, GLM, GAM) and no comparison (HSD, which model) is "
            "identified. Nothing to analyse until some run learns (a smaller learning rate in the config's lrs?)."
        )


def observed_cells(predictions: pd.DataFrame, groups: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The predictions which_model ranks: at a trained size only the models with a run there
    (an HSD group), with a note naming each model left out of a trained size (its runs
    missing); untrained sizes keep every model."""
    cells = set(zip(groups["backbone"], groups["size"]))
    keep = ~predictions["trained"] | np.array(
        [(b, s) in cells for b, s in zip(predictions["backbone"], predictions["size"])], dtype=bool
    )
    notes = [
        f"No run of {r.model} ({r.backbone}) at {r.size} images: which model ranks the models trained at that size "
        "without it (its OLS prediction there is in predictions.csv)."
        for r in predictions.loc[~keep].itertuples()
    ]
    return predictions.loc[keep].reset_index(drop=True), notes


def write_analysis(
    metrics_path,
    outputs: Mapping[str, object],
    metric: str = "test_dice",
    ols_formula: str = PAPER_OLS,
    glm_formula: str = PAPER_GLM,
    predict_sizes=(3000,),
    alpha: float = 0.05,
    sample_size_path=None,
) -> list[Path]:
    """Read the merged metrics table and write every output of the analysis to the path
    `outputs` gives it (the `stats` rule's named outputs); with `sample_size_path`
    (sample_size.csv), which_model leads with the images needed."""
    result = analyse(read_metrics(metrics_path), metric, ols_formula, glm_formula, predict_sizes, alpha)
    if sample_size_path is not None:
        path = Path(sample_size_path)
        if not path.is_file():
            raise UnetcapError(f"{path}: missing; the sample_size rule writes it")
        result["sample_size"] = pd.read_csv(path)
    return write_results(result, outputs)


def write_results(result: dict, outputs: Mapping[str, object]) -> list[Path]:
    """Write the results of `analyse` to the paths of `outputs` (output name -> path, the
    names of `render_results`), each atomically (a temporary name, then renamed). Raises
    UnetcapError naming every output that is missing from `outputs` or unknown."""
    return write_outputs(render_results(result), outputs, "stats")


def render_results(result: dict) -> dict[str, str]:
    """The text of every output of the analysis, by the `stats` rule's name for it."""
    t = _formatted(result)
    summary = result["frame"].runs + "\n" + gam_summary(result["gam"])
    return {
        "which_model_html": to_html(t["which"], t["plan"], [*t["general"], *(f"Note: {n}" for n in result["notes"])]),
        "which_model_csv": csv_text(result["which"]),
        "which_model_md": _which_model_md(t["which"], t["plan"], t["general"]),
        "table1_html": to_html(t["table1"]),
        "table1_csv": csv_text(result["coef"]),
        "table1_tex": "\n".join(to_latex(x) for x in t["table1"]),
        "table1_md": "\n".join(to_markdown(x) for x in t["table1"]),
        "table1_depth": csv_text(result["depth"]),
        "paper_csv": csv_text(result["paper"]),
        "paper_md": to_markdown(format_paper(result["paper"])),
        "table2_html": to_html([t["table2"]]),
        "table2_csv": csv_text(result["anova"]),
        "table2_tex": to_latex(t["table2"]),
        "table2_md": to_markdown(t["table2"]),
        "aic_html": to_html([t["aic"], t["glm"]]),
        "aic_csv": csv_text(result["aic"]),
        "aic_md": to_markdown(t["aic"]),
        "glm_csv": csv_text(result["glm_coef"]),
        "glm_md": to_markdown(t["glm"]),
        "hsd_html": to_html(t["hsd"]),
        "hsd_csv": csv_text(result["pairs"]),
        "hsd_groups": csv_text(result["groups"]),
        "predictions": csv_text(result["predictions"]),
        "gam_html": pre_html("GAM summary", summary),
        "gam_txt": summary,
        "gam_md": to_markdown(t["gam"]),
        "gam_csv": csv_text(result["gam_terms"]),
        "gam_partial": csv_text(result["gam_partial"]),
        "notes": _notes_md(result),
    }


def _formatted(result: dict) -> dict:
    """The tables of `analyse`'s result as the outputs print them, each opening with the runs it
    rests on, and the sample-size plan that leads which_model (none without sample_size.csv)."""
    ols, glm, alpha = result["ols"], result["glm"], result["alpha"]
    t1 = format_table1(result["coef"], result["aic"], ols, glm, ols.notes)
    t = {
        "table2": format_anova(result["anova"], ols, ols.notes),
        "aic": format_aic(result["aic"]),
        "glm": format_glm(result["glm_coef"], glm, glm.notes),
        "hsd": format_hsd(result["groups"], result["pairs"], alpha),
        "gam": format_terms(result["gam_terms"], result["gam"]),
    }
    t["which"], t["general"] = format_which_model(result["which"], alpha, result["constant_ranking"])
    td = format_depth(result["depth"], alpha)
    runs = result["frame"].runs
    for table in (t1, td, t["table2"], t["aic"], t["glm"], *t["hsd"], *t["which"], t["gam"]):
        table.notes.insert(0, runs)  # each table says which runs it rests on
    t["table1"] = [t1, td] if len(result["depth"]) else [t1]
    t["plan"] = []
    if result.get("sample_size") is not None:
        t["plan"] = ["How many images do I need? (learning curves chosen by backtest, sample_size.md)"]
        t["plan"] += plan_lines(result["sample_size"])
    return t


def _which_model_md(tables: list, plan: list[str], general: list[str]) -> str:
    """which_model.md: the images needed (`plan`), the tables, the general notes."""
    return (
        "# Which model for my data size?\n\n"
        + "".join(f"{p}  \n" for p in plan)
        + ("\n" if plan else "")
        + "\n".join(to_markdown(t) for t in tables)
        + "".join(f"\n{g}\n" for g in general)
    )


def _notes_md(result: dict) -> str:
    """notes.md: every note of the analysis, then the conventions of AIC and ANOVA and the formulas."""
    ols, glm = result["ols"], result["glm"]
    notes = result["notes"] + [
        AIC_CONVENTION,
        ANOVA_CAPTION,
        f"OLS: `{ols.formula}`; GLM: `{glm.formula}` ({glm.link} link, response {glm.response}).",
    ]
    return "# Notes on the analysis\n\n" + "".join(f"- {n}\n" for n in notes)
