# Stage 6b: the statistics of the study from the merged metrics table alone (docs/design.md §11-12):
# OLS (Table 1) and its AIC against the log-link GLM, type 2 ANOVA (Table 2), Tukey HSD,
# the GAM and "which model for my data size?", led by the images needed per target DICE
# (rule sample_size).

STATISTICS = "2 Statistics"


rule stats:
    input:
        metrics="<results>/metrics.csv",
        sample_size=rules.sample_size.output.table_csv,
    output:
        which_model_html=report(
            "<results>/analysis/which_model.html",
            caption="../report/which_model.rst",
            category=WHICH_MODEL,
            labels={"table": "best model per dataset size"},
        ),
        which_model_csv=report(
            "<results>/analysis/which_model.csv",
            caption="../report/which_model.rst",
            category=WHICH_MODEL,
            labels={"table": "best model per dataset size (CSV)"},
        ),
        which_model_md="<results>/analysis/which_model.md",
        table1_html=report(
            "<results>/analysis/table1_ols.html",
            caption="../report/table1.rst",
            category=STATISTICS,
            subcategory="Table 1: OLS",
        ),
        table1_csv=report(
            "<results>/analysis/table1_ols.csv",
            caption="../report/table1.rst",
            category=STATISTICS,
            subcategory="Table 1: OLS",
        ),
        table1_tex=report(
            "<results>/analysis/table1_ols.tex",
            caption="../report/table1.rst",
            category=STATISTICS,
            subcategory="Table 1: OLS",
        ),
        table1_md="<results>/analysis/table1_ols.md",
        table1_depth=report(
            "<results>/analysis/table1_depth.csv",
            caption="../report/table1.rst",
            category=STATISTICS,
            subcategory="Table 1: OLS",
        ),
        paper_csv=report(
            "<results>/analysis/paper.csv",
            caption="../report/paper.rst",
            category=STATISTICS,
            subcategory="The paper beside the study",
        ),
        paper_md="<results>/analysis/paper.md",
        table2_html=report(
            "<results>/analysis/table2_anova.html",
            caption="../report/table2.rst",
            category=STATISTICS,
            subcategory="Table 2: ANOVA",
        ),
        table2_csv=report(
            "<results>/analysis/table2_anova.csv",
            caption="../report/table2.rst",
            category=STATISTICS,
            subcategory="Table 2: ANOVA",
        ),
        table2_tex=report(
            "<results>/analysis/table2_anova.tex",
            caption="../report/table2.rst",
            category=STATISTICS,
            subcategory="Table 2: ANOVA",
        ),
        table2_md="<results>/analysis/table2_anova.md",
        aic_html=report(
            "<results>/analysis/aic.html",
            caption="../report/aic.rst",
            category=STATISTICS,
            subcategory="AIC: OLS vs GLM",
        ),
        aic_csv=report(
            "<results>/analysis/aic.csv",
            caption="../report/aic.rst",
            category=STATISTICS,
            subcategory="AIC: OLS vs GLM",
        ),
        aic_md="<results>/analysis/aic.md",
        glm_csv=report(
            "<results>/analysis/glm.csv",
            caption="../report/aic.rst",
            category=STATISTICS,
            subcategory="AIC: OLS vs GLM",
        ),
        glm_md="<results>/analysis/glm.md",
        hsd_html=report(
            "<results>/analysis/hsd.html", caption="../report/hsd.rst", category=STATISTICS, subcategory="Tukey HSD"
        ),
        hsd_csv=report(
            "<results>/analysis/hsd.csv", caption="../report/hsd.rst", category=STATISTICS, subcategory="Tukey HSD"
        ),
        hsd_groups=report(
            "<results>/analysis/hsd_groups.csv",
            caption="../report/hsd.rst",
            category=STATISTICS,
            subcategory="Tukey HSD",
        ),
        predictions=report(
            "<results>/analysis/predictions.csv",
            caption="../report/predictions.rst",
            category=STATISTICS,
            subcategory="OLS predictions",
        ),
        gam_html=report(
            "<results>/analysis/gam_summary.html", caption="../report/gam.rst", category=STATISTICS, subcategory="GAM"
        ),
        gam_txt="<results>/analysis/gam_summary.txt",
        gam_md="<results>/analysis/gam_summary.md",
        gam_csv=report(
            "<results>/analysis/gam_terms.csv", caption="../report/gam.rst", category=STATISTICS, subcategory="GAM"
        ),
        gam_partial=report(
            "<results>/analysis/gam_partial.csv", caption="../report/gam.rst", category=STATISTICS, subcategory="GAM"
        ),
        notes=report(
            "<results>/analysis/notes.md", caption="../report/notes.rst", category=STATISTICS, subcategory="Notes"
        ),
    log:
        "<logs>/analysis/stats.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        metric=config["analysis"]["metric"],
        ols_formula=config["analysis"]["ols_formula"],
        glm_formula=config["analysis"]["glm_formula"],
        predict_sizes=config["analysis"]["predict_sizes"],
        alpha=config["analysis"]["alpha"],
    script:
        "../scripts/stats.py"
