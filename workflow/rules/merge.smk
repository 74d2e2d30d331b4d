# Stage 5: every run's metrics.json, history.csv and kept segmentations merged into one
# file each, and every run's scores per holdout patient (holdout.csv).


rule merge:
    input:
        metrics=[f"{run}/metrics.json" for run in run_dirs()],
        histories=[f"{run}/history.csv" for run in run_dirs()],
        segmentations=[f"{run}/segmentations.npz" for run in run_dirs()],
        store="<results>/prepared/store.json",
        images="<results>/prepared/images.npy",
        masks="<results>/prepared/masks.npy",
    output:
        metrics="<results>/metrics.csv",
        histories="<results>/histories.csv",
        holdout="<results>/holdout.csv",
        segmentations="<results>/segmentations.npz",
    log:
        "<logs>/merge.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/merge.py"
