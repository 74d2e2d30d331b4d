from unetcap import log_to
from unetcap.figures import write_figures

log_to(snakemake.log[0])
write_figures(
    snakemake.input.metrics,
    snakemake.input.histories,
    snakemake.input.groups,
    snakemake.input.predictions,
    snakemake.input.partial,
    snakemake.input.segmentations,
    dict(snakemake.output.items()),
    curves_path=snakemake.input.curves,
    answers_path=snakemake.input.answers,
    **snakemake.params,
)
