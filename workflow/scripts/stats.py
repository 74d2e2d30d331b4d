from unetcap import log_to
from unetcap.analysis.run import write_analysis

log_to(snakemake.log[0])
write_analysis(
    snakemake.input.metrics,
    dict(snakemake.output.items()),
    sample_size_path=snakemake.input.sample_size,
    **snakemake.params,
)
