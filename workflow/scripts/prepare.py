from unetcap import log_to
from unetcap.prepare import prepare_store

log_to(snakemake.log[0])
# every file at the path the rule names (images, masks, index, store); as many workers as
# the job has threads (--cores and the Slurm profile scale them)
prepare_store(snakemake.input.sample, **snakemake.output, workers=snakemake.threads, **snakemake.params)
