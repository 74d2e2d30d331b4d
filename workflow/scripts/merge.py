from unetcap import log_to
from unetcap.merge import merge
from unetcap.segmentations import merge_segmentations

log_to(snakemake.log[0])
merge(snakemake.input.metrics, snakemake.input.histories, snakemake.output.metrics, snakemake.output.histories)
merge_segmentations(
    snakemake.input.segmentations, snakemake.input.metrics, snakemake.input.store, snakemake.output.segmentations
)
