from unetcap import log_to
from unetcap.merge import merge
from unetcap.segmentations import merge_segmentations

log_to(snakemake.log[0])
out = snakemake.output
merge(snakemake.input.metrics, snakemake.input.histories, out.metrics, out.histories, out.holdout)
merge_segmentations(snakemake.input.segmentations, snakemake.input.metrics, snakemake.input.store, out.segmentations)
