# Stage 7: the study's figures from the merged tables and the statistics (docs/design.md §13).


rule figures:
    input:
        metrics="<results>/metrics.csv",
        histories="<results>/histories.csv",
        groups="<results>/analysis/hsd_groups.csv",
        predictions="<results>/analysis/predictions.csv",
        partial="<results>/analysis/gam_partial.csv",
        segmentations="<results>/segmentations.npz",
        curves=rules.sample_size.output.curves,
        answers=rules.sample_size.output.table_csv,
    output:
        figure2_left=report(
            "<results>/figures/figure2_left.png", caption="../report/figure2_left.rst", category="3 Figures"
        ),
        figure2_left_pdf="<results>/figures/figure2_left.pdf",
        figure2_right=report(
            "<results>/figures/figure2_right.png", caption="../report/figure2_right.rst", category="3 Figures"
        ),
        figure2_right_pdf="<results>/figures/figure2_right.pdf",
        figure3=report("<results>/figures/figure3.png", caption="../report/figure3.rst", category="3 Figures"),
        figure3_pdf="<results>/figures/figure3.pdf",
        learning_curves=report(
            "<results>/figures/learning_curves.png", caption="../report/learning_curves.rst", category="3 Figures"
        ),
        learning_curves_pdf="<results>/figures/learning_curves.pdf",
        gam_partial=report(
            "<results>/figures/gam_partial.png", caption="../report/gam_partial.rst", category="3 Figures"
        ),
        gam_partial_pdf="<results>/figures/gam_partial.pdf",
        segmentations=report(
            "<results>/figures/segmentations.png", caption="../report/segmentations.rst", category="3 Figures"
        ),
        segmentations_pdf="<results>/figures/segmentations.pdf",
        sample_size=report(
            "<results>/figures/sample_size.png", caption="../report/sample_size_figure.rst", category="3 Figures"
        ),
        sample_size_pdf="<results>/figures/sample_size.pdf",
    log:
        "<logs>/analysis/figures.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        metric=config["analysis"]["metric"],
        targets=config["analysis"]["sample_size"]["targets"],
        runs=config["analysis"]["sample_size"]["runs"],
        sample_size_metric=config["analysis"]["sample_size"]["metric"],
    script:
        "../scripts/figures.py"
