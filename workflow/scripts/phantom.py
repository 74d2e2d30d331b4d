from unetcap import log_to
from unetcap.phantom import write_phantom

log_to(snakemake.log[0])
write_phantom(snakemake.output[0], **snakemake.params)
