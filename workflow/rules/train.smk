# Stage 4: one training run per (size, backbone, lr, reg, fold): a U-Net trained from
# scratch on one fold, scored on its validation fold and on the subset's test set.
# On Slurm, several runs can share one job and its GPU (group TRAIN_GROUP, pack.smk).


rule train:
    input:
        images="<results>/prepared/images.npy",
        masks="<results>/prepared/masks.npy",
        store="<results>/prepared/store.json",
        manifest="<results>/splits/size{size}.json",
    output:
        metrics=f"{RUN_DIR}/metrics.json",
        history=f"{RUN_DIR}/history.csv",
        segmentations=f"{RUN_DIR}/segmentations.npz",
    log:
        f"<logs>/train/{BACKEND_DIR}size{{size}}/{{backbone}}/lr{{lr}}_reg{{reg}}/fold{{fold}}.log",
    group:
        TRAIN_GROUP
    conda:
        TRAIN_ENV
    threads: config["train"]["threads"]
    resources:
        mem_mb=train_mem_mb,
        runtime=lambda wildcards, attempt: config["train"]["runtime"] * attempt,
        gpu=config["train"]["gpus"],
    params:
        **train_settings(),
        seed=config["seed"],
        config_sha256=TRAIN_CONFIG_SHA256,
    script:
        "../scripts/train.py"
