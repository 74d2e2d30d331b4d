# Stage 6a: "how many images do I need?" (docs/design.md §12): learning curves of four
# families per encoder, chosen by a backtest on sizes their fit did not see, beside the
# paper's OLS and carrying the last value forward; the images needed per target DICE.

WHICH_MODEL = "1 Which model for my data size?"


rule sample_size:
    input:
        metrics="<results>/metrics.csv",
        holdout=holdout_table(),
    output:
        table_html=report(
            "<results>/analysis/sample_size.html",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "images needed per target DICE"},
        ),
        table_csv=report(
            "<results>/analysis/sample_size.csv",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "images needed per target DICE (CSV)"},
        ),
        table_md="<results>/analysis/sample_size.md",
        families=report(
            "<results>/analysis/sample_size_families.csv",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "curve families against the baselines, by backtest (CSV)"},
        ),
        fits=report(
            "<results>/analysis/sample_size_fits.csv",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "learning curves (CSV)"},
        ),
        crossings=report(
            "<results>/analysis/sample_size_crossings.csv",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "where one model overtakes another (CSV)"},
        ),
        backtest=report(
            "<results>/analysis/sample_size_backtest.csv",
            caption="../report/sample_size.rst",
            category=WHICH_MODEL,
            labels={"table": "backtest of every family and baseline (CSV)"},
        ),
        curves="<results>/analysis/sample_size_curves.csv",
    log:
        "<logs>/analysis/sample_size.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        metric=config["analysis"]["sample_size"]["metric"],
        targets=config["analysis"]["sample_size"]["targets"],
        resamples=config["analysis"]["sample_size"]["resamples"],
        runs=config["analysis"]["sample_size"]["runs"],
        seed=config["seed"],
        ols_formula=config["analysis"]["ols_formula"],
    script:
        "../scripts/sample_size.py"
