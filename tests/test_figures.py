"""The figures (unetcap.figures) and the analysis rules: every figure file from a generated
table, byte-identical rebuilds, and a rebuild through Snakemake from the merged tables alone
that schedules no training job."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import synthetic
from helpers import digests
from snakemake_run import copy_workflow, job_counts, snakemake

from unetcap import figures
from unetcap.analysis.run import write_analysis
from unetcap.analysis.sample_size_text import write_sample_size

SMALL_GRID = {
    "sizes": (200, 1000),
    "backbones": ("resnet18", "resnet50", "vgg16"),
    "lrs": (0.01, 0.001),
    "regs": (0.0001, 1e-06),
    "folds": 2,
}


def draw(metrics_csv, histories_csv, analysis: Path, out: Path):
    """Every figure into `out`; the sample-size curves are written beside the figures, not
    into `analysis` (which other tests share and list)."""
    curves = out / "sample_size"
    write_sample_size(metrics_csv, synthetic.rule_outputs("sample_size", curves), resamples=50)
    written = figures.write_figures(
        metrics_csv,
        histories_csv,
        analysis / "hsd_groups.csv",
        analysis / "predictions.csv",
        analysis / "gam_partial.csv",
        Path(metrics_csv).with_name("segmentations.npz"),
        synthetic.rule_outputs("figures", out),
        curves_path=curves / "sample_size_curves.csv",
        answers_path=curves / "sample_size.csv",
    )
    shutil.rmtree(curves)
    return written


def test_every_figure_from_the_full_grid(tmp_path):
    from PIL import Image

    _, histories_csv, _, analysis = synthetic.analysed(seed=0)
    written = draw(analysis.parent / "in" / "metrics.csv", histories_csv, analysis, tmp_path)
    assert written == list(synthetic.rule_outputs("figures", tmp_path).values())
    for name in figures.FIGURES:
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        with Image.open(png) as image:
            assert image.width > 800 and image.height > 500
            assert "Software" not in image.info
        head = pdf.read_bytes()
        assert head.startswith(b"%PDF") and b"CreationDate" not in head and b"Producer" not in head


def _small(tmp_path, seed=0, **grid):
    metrics_csv, histories_csv = synthetic.write_tables(tmp_path / "in", seed=seed, **grid)
    write_analysis(metrics_csv, synthetic.rule_outputs("stats", tmp_path / "analysis"))
    return metrics_csv, histories_csv, tmp_path / "analysis"


def test_the_test_config_grid_gives_every_figure_and_identical_redraws(tmp_path):
    metrics_csv, histories_csv, analysis = _small(tmp_path, seed=1, **synthetic.TEST_GRID)
    written = draw(metrics_csv, histories_csv, analysis, tmp_path / "fig")
    assert written == list(synthetic.rule_outputs("figures", tmp_path / "fig").values())
    first = digests(tmp_path / "fig")
    draw(metrics_csv, histories_csv, analysis, tmp_path / "fig")
    assert digests(tmp_path / "fig") == first


def test_the_figures_go_where_the_rule_says_and_a_name_it_does_not_give_stops_them(tmp_path):
    from unetcap import UnetcapError

    metrics_csv, histories_csv, analysis = _small(tmp_path, seed=1, **synthetic.TEST_GRID)
    inputs = (metrics_csv, histories_csv, analysis / "hsd_groups.csv", analysis / "predictions.csv")
    inputs += (analysis / "gam_partial.csv", Path(metrics_csv).with_name("segmentations.npz"))
    curves = tmp_path / "curves"
    write_sample_size(metrics_csv, synthetic.rule_outputs("sample_size", curves), resamples=20)
    kw = {"curves_path": curves / "sample_size_curves.csv", "answers_path": curves / "sample_size.csv"}
    outputs = synthetic.rule_outputs("figures", tmp_path / "fig")
    renamed = {**outputs, "figure3": tmp_path / "elsewhere" / "three.png"}
    written = figures.write_figures(*inputs, renamed, **kw)
    assert tmp_path / "elsewhere" / "three.png" in written and (tmp_path / "elsewhere" / "three.png").is_file()
    assert not (tmp_path / "fig" / "figure3.png").exists()
    fresh = synthetic.rule_outputs("figures", tmp_path / "bad")
    for bad, message in (
        ({k: v for k, v in fresh.items() if k != "figure3_pdf"}, "no path for figure3_pdf"),
        ({**fresh, "figure4": tmp_path / "bad" / "figure4.png"}, "unknown output.s. figure4"),
    ):
        with pytest.raises(UnetcapError, match=message):
            figures.write_figures(*inputs, bad, **kw)
    assert not (tmp_path / "bad").exists()  # nothing drawn for a bad set of outputs


def test_runs_that_did_not_learn_are_crosses_and_counted_under_every_pooled_figure():
    from unetcap.analysis.table import model_frame

    metrics, *_ = synthetic.analysed(seed=0)
    metrics = metrics.assign(model=metrics["backbone"].map(lambda b: figures.BACKBONES[b].short))
    metrics = metrics[metrics["status"] == "ok"].reset_index(drop=True)  # the diverged ones end at 0
    metrics.loc[metrics.index[:3], "val_dice"] = 0.01
    frame = model_frame(metrics, "test_dice")
    assert int((~frame.data["learned"]).sum()) == 3
    assert "3 run(s) did not learn (validation DICE below 0.05), kept" in frame.runs
    fig = figures.figure2_left(metrics)
    figures.flag_not_learned(fig, 3)
    assert fig.get_supxlabel().startswith("3 run(s) did not learn (validation DICE below 0.05)")
    empty = figures.figure2_left(metrics)
    figures.flag_not_learned(empty, 0)
    assert empty.get_supxlabel() == ""
    assert set(figures.POOLED) <= set(figures.FIGURES)


def test_models_in_the_papers_order_and_family_colours():
    assert figures.model_names(["vgg19", "resnet50", "efficientnetb0", "vgg16"]) == ["B0", "R50", "V16", "V19"]
    colours = figures.palette()
    assert list(colours) == ["B0", "B5", "R18", "R50", "V16", "V19"]
    assert len(set(colours.values())) == 6


def test_histories_without_needed_columns_are_refused(tmp_path):
    from unetcap import UnetcapError

    path = tmp_path / "histories.csv"
    pd.DataFrame({"size": [200], "backbone": ["vgg16"], "epoch": [1]}).to_csv(path, index=False)
    with pytest.raises(UnetcapError, match="histories.csv: missing column"):
        figures.read_histories(path)


# ------------------------------------------------------------------------------ Snakemake

SNAKEFILE = """\
# Throwaway Snakefile: the analysis rules, and stand-ins for training and merge that must
# never run when the analysis is rebuilt from the merged tables.
configfile: "config/config.yaml"

include: "workflow/rules/common.smk"
include: "workflow/rules/sample_size.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/analysis.smk"


rule train:
    output:
        "<results>/runs/done.txt",
    shell:
        "touch {{output}}"


rule merge:
    input:
        "<results>/runs/done.txt",
    output:
        "<results>/metrics.csv",
        "<results>/histories.csv",
        "<results>/segmentations.npz",
    shell:
        "exit 1"
"""
# README's rebuild of the showcase, into results/showcase/.
REBUILD = [
    "analysis",
    "--configfile",
    "config/showcase.yaml",
    "--cores",
    "2",
    "--allowed-rules",
    "sample_size",
    "stats",
    "figures",
    "analysis",
    "--forcerun",
    "sample_size",
    "stats",
    "figures",
]


@pytest.mark.slow
def test_rebuild_from_the_merged_tables_alone(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    (work / "Snakefile").write_text(SNAKEFILE.format())
    results = work / "results/showcase"
    synthetic.write_tables(results, seed=2, **SMALL_GRID)
    # A training output newer than the merged tables: a plain run would retrain and merge.
    (results / "runs").mkdir()
    (results / "runs/done.txt").touch()
    plain = snakemake(work, "analysis", "-n", "--configfile", "config/showcase.yaml", "--cores", "1")
    assert plain.returncode == 0, plain.stderr
    assert {"train", "merge"} & set(job_counts(plain.stdout))

    run = snakemake(work, *REBUILD)
    assert run.returncode == 0, run.stderr
    assert job_counts(run.stderr + run.stdout) == {
        "analysis": 1,
        "figures": 1,
        "sample_size": 1,
        "stats": 1,
        "total": 4,
    }
    outputs = [
        *synthetic.rule_outputs("stats", results / "analysis").values(),
        *synthetic.rule_outputs("sample_size", results / "analysis").values(),
    ]
    outputs += synthetic.rule_outputs("figures", results / "figures").values()
    assert all(p.is_file() for p in outputs)
    assert (work / "logs/showcase/analysis/stats.log").is_file()
    first = digests(results / "analysis") | digests(results / "figures")

    again = snakemake(work, *REBUILD)
    assert again.returncode == 0, again.stderr
    assert digests(results / "analysis") | digests(results / "figures") == first

    report = snakemake(
        work,
        "analysis",
        "--configfile",
        "config/showcase.yaml",
        "--allowed-rules",
        "sample_size",
        "stats",
        "figures",
        "analysis",
        "--report",
        "results/showcase/report.html",
    )
    assert report.returncode == 0, report.stderr
    assert (results / "report.html").stat().st_size > 100_000
    assert sorted(p.name for p in (work / "results").iterdir()) == ["showcase"]


def test_segmentations_show_each_model_by_its_best_settings_at_the_smallest_and_largest_size(tmp_path):
    from unetcap.segmentations import read_segmentations

    metrics_csv, _ = synthetic.write_tables(tmp_path, seed=3, **SMALL_GRID)
    metrics = pd.read_csv(metrics_csv)
    kept = read_segmentations(tmp_path / "segmentations.npz")
    shown = figures.shown_runs(kept, metrics)
    assert len(shown) == 3 * 2 and (shown["fold"] == 0).all()
    for run in shown.itertuples():
        same = metrics[(metrics.backbone == run.backbone) & (metrics["size"] == run.size)]
        means = same.groupby(["lr", "reg"])["test_dice"].mean()
        assert (run.lr, run.reg) == means.idxmax()
        assert (kept["backbone"][run.index], kept["size"][run.index]) == (run.backbone, run.size)
    fig = figures.segmentations(kept, metrics)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 * 2 * 2  # models x sizes x images
    assert any(ax.get_title().startswith("DICE") for ax in panels)
