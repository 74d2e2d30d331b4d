# Stage 5: every run's metrics.json and history.csv merged into one table each.


rule merge:
    input:
        metrics=[f"{run}/metrics.json" for run in run_dirs()],
        histories=[f"{run}/history.csv" for run in run_dirs()],
    output:
        metrics="results/metrics.csv",
        histories="results/histories.csv",
    log:
        "logs/merge.log",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/merge.py"
