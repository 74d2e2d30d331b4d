from unetcap import log_to
from unetcap.cohort import write_index

log_to(snakemake.log[0])
write_index(snakemake.input.cohort, snakemake.output.index, **snakemake.params)
