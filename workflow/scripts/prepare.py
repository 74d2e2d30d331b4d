from pathlib import Path

from unetcap import log_to
from unetcap.prepare import prepare_store

log_to(snakemake.log[0])
# as many workers as the job has threads (--cores and the Slurm profile scale them)
prepare_store(
    snakemake.input.sample, Path(snakemake.output.store).parent, workers=snakemake.threads, **snakemake.params
)
