# Stage 7: the study's figures from the merged tables and the statistics (DESIGN §10), and
# the `analysis` target: every table and figure, rebuilt from results/metrics.csv and
# results/histories.csv (and results/segmentations.npz) alone with
#   snakemake analysis --allowed-rules stats figures analysis --forcerun stats figures


rule figures:
    input:
        metrics="results/metrics.csv",
        histories="results/histories.csv",
        groups="results/analysis/hsd_groups.csv",
        predictions="results/analysis/predictions.csv",
        partial="results/analysis/gam_partial.csv",
        segmentations="results/segmentations.npz",
    output:
        figure2_left=report("results/figures/figure2_left.png", caption="../report/figure2_left.rst",
                            category="3 Figures"),
        figure2_left_pdf="results/figures/figure2_left.pdf",
        figure2_right=report("results/figures/figure2_right.png", caption="../report/figure2_right.rst",
                             category="3 Figures"),
        figure2_right_pdf="results/figures/figure2_right.pdf",
        figure3=report("results/figures/figure3.png", caption="../report/figure3.rst", category="3 Figures"),
        figure3_pdf="results/figures/figure3.pdf",
        learning_curves=report("results/figures/learning_curves.png",
                               caption="../report/learning_curves.rst", category="3 Figures"),
        learning_curves_pdf="results/figures/learning_curves.pdf",
        gam_partial=report("results/figures/gam_partial.png", caption="../report/gam_partial.rst",
                           category="3 Figures"),
        gam_partial_pdf="results/figures/gam_partial.pdf",
        segmentations=report("results/figures/segmentations.png", caption="../report/segmentations.rst",
                             category="3 Figures"),
        segmentations_pdf="results/figures/segmentations.pdf",
    log:
        "logs/analysis/figures.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        metric=config["analysis"]["metric"],
    script:
        "../scripts/figures.py"


# Every table and figure of the analysis (for `rule all`).
ANALYSIS_OUTPUTS = [*rules.stats.output, *rules.figures.output]


localrules:
    analysis,


rule analysis:
    input:
        ANALYSIS_OUTPUTS,
