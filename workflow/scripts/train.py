import os
import sys

from unetcap import log_to
from unetcap.train import train_run

log_to(snakemake.log[0])
for fd in (1, 2):  # TensorFlow's and segmentation-models' own messages go to the log too
    os.dup2(sys.stderr.fileno(), fd)
w = snakemake.wildcards
train_run(
    **snakemake.input,
    **snakemake.output,
    size=int(w.size),
    backbone=w.backbone,
    lr=float(w.lr),
    reg=float(w.reg),
    fold=int(w.fold),
    **snakemake.params,
)
