from unetcap import log_to
from unetcap.analysis.sample_size_text import write_sample_size

log_to(snakemake.log[0])
holdout = snakemake.input.get("holdout") or None  # none when the curves are not fitted on the holdout pool
write_sample_size(snakemake.input.metrics, dict(snakemake.output.items()), holdout, **snakemake.params)
