from unetcap import log_to
from unetcap.cohort import write_sample

log_to(snakemake.log[0])
write_sample(snakemake.input.cohort, snakemake.output.sample, **snakemake.params)
