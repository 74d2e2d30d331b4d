from unetcap import log_to
from unetcap.cohort import write_sample

log_to(snakemake.log[0])
# as many workers as the job has threads (--cores and the Slurm profile scale them)
write_sample(snakemake.input.cohort, snakemake.output.sample, workers=snakemake.threads, **snakemake.params)
