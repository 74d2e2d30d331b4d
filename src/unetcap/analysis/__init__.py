"""The study's statistics (docs/design.md §11), from the merged metrics table alone.

One frame of the paper's variables (`table.model_frame`): `DICE` (the chosen metric), `ls`
(the encoder's depth, long/short), `Family`, `Dataset` (the subset size), `lr`, `reg`. On it,
one module per concern:

- `table`: the merged metrics table read and checked, and the model frame (shared with the
  sample-size analysis and `unetcap.figures`; imports no model library);
- `formula`: the paper's formulas, reduced to what a grid identifies (`usable_formula`: a
  factor with a single level leaves the interactions it is part of, a term with a numeric
  variable of a single value is dropped, each with a note);
- `linear`: the paper's OLS (Table 1), the log-link gaussian GLM on DICE itself and both
  models' AIC, fitted with statsmodels;
- `anova`: the type 2 ANOVA of the OLS (Table 2) with η² and partial η²;
- `predict`: the OLS's mean DICE per model and size (also for untrained sizes) and Table 1's
  short-minus-long contrasts;
- `hsd`: Tukey HSD of mean DICE over model x dataset-size groups (statsmodels);
- `gam`: a GAM (pygam) with a spline on log(Dataset) and factor terms, smoothing chosen per
  term;
- `recommend`: "which model for my data size?";
- `paper`: the paper's Tables 1 and 2 beside the study's;
- `render`: numbers and tables as Markdown, LaTeX, HTML and CSV;
- `run`: all of it (`analyse`), written to the paths the `stats` rule names
  (`write_analysis`).

How many images (docs/design.md §12, the `sample_size` rule), in the order the work flows:

- `curves`: the learning-curve families, fitted exactly to many bootstrap replicates at once;
- `resample`: the runs of the curves and replicates that resample training sets and holdout
  patients;
- `backtest`: every family and two baselines judged on sizes their fit did not see, the
  family chosen and its band widened by them;
- `sample_size`: the answer per model and target, the fits, the curves, the crossings;
- `sample_size_text`: the answer in words and tables, written to the paths the rule names.

This file imports nothing: `unetcap.analysis.table` stays free of statsmodels and pygam.
"""
