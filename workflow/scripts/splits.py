from unetcap import log_to
from unetcap.splits import write_manifest

log_to(snakemake.log[0])
write_manifest(snakemake.input.sample, snakemake.output[0], size=int(snakemake.wildcards.size), **snakemake.params)
