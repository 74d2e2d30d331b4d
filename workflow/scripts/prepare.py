from pathlib import Path

from unetcap import log_to
from unetcap.prepare import prepare_store

log_to(snakemake.log[0])
prepare_store(snakemake.input.sample, Path(snakemake.output.store).parent, **snakemake.params)
