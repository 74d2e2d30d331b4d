# The `analysis` target: every table and figure, rebuilt from results/<study>/metrics.csv and
# histories.csv (and holdout.csv, segmentations.npz) alone with
#   snakemake analysis --allowed-rules sample_size stats figures analysis --forcerun sample_size stats figures

# Every table and figure of the analysis (for `rule all`).
ANALYSIS_OUTPUTS = [*rules.sample_size.output, *rules.stats.output, *rules.figures.output]


localrules:
    analysis,


rule analysis:
    input:
        ANALYSIS_OUTPUTS,
