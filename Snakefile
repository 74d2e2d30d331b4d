# U-Net capacity vs dataset size: Toledo et al. 2021 as a workflow.
# cohort -> prepared store -> splits per size -> training runs -> metrics -> statistics, figures, report
from snakemake.utils import min_version

# pathvars (<results>, <logs>: one folder per study) are recent; 9.27 is the pinned version, tested.
min_version("9.27")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pack.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/sample_size.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/analysis.smk"


rule all:
    input:
        "<results>/metrics.csv",
        ANALYSIS_OUTPUTS,
        pack_flags(),
