from unetcap import log_to
from unetcap.phantom import write_cohort

log_to(snakemake.log[0])
write_cohort(snakemake.output[0], **snakemake.params)
