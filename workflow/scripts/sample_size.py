from unetcap import log_to
from unetcap.sample_size import write_sample_size

log_to(snakemake.log[0])
write_sample_size(snakemake.input.metrics, dict(snakemake.output.items()), **snakemake.params)
