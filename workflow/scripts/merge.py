from unetcap import log_to
from unetcap.metrics import merge

log_to(snakemake.log[0])
merge(snakemake.input.metrics, snakemake.input.histories,
      snakemake.output.metrics, snakemake.output.histories)
