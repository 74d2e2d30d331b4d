from pathlib import Path

from unetcap import log_to
from unetcap.stats import write_analysis

log_to(snakemake.log[0])
write_analysis(
    snakemake.input.metrics,
    Path(snakemake.output.table1_csv).parent,
    sample_size_path=snakemake.input.sample_size,
    **snakemake.params,
)
