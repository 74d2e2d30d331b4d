# Stage 4b, with UNETCAP_RUNS_PER_GPU above 1 (k; the Slurm profile's default is 4: README,
# Several runs per GPU): the training runs go k at a time into one Slurm job on one GPU.
# A pack job waits for its k runs and writes a flag; in one group ("gpu") with them, it
# makes the k runs one group job, which the Slurm plugin runs as one job step where
# Snakemake starts the k runs side by side. (A group of the runs alone would be one Slurm
# job too, but the plugin runs its members one after the other: its issue #469.)


rule pack:
    input:
        metrics=pack_metrics,
    output:
        flag="<results>/packs/pack{pack}.done",
    log:
        "<logs>/packs/pack{pack}.log",
    group:
        TRAIN_GROUP
    run:
        # the flag and the log: the pack's run folders, one a line
        for path in (output.flag, log[0]):
            Path(path).write_text("".join(f"{Path(m).parent}\n" for m in input.metrics))
