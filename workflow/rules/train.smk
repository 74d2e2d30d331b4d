# Stage 4: one training run per (size, backbone, lr, reg, fold): a U-Net trained from
# scratch on one fold, scored on its validation fold and on the subset's test set.

# Keys of config `train` that the training library takes (the rest are job resources).
TRAIN_SETTINGS = ["max_epochs", "patience", "batch_size", "optimizer", "schedule",
                  "plateau_factor", "plateau_patience", "threads", "save_model",
                  "checkpoint_every", "grappler"]


def train_settings():
    """How every run trains: config `train` without the job resources."""
    return {key: config["train"][key] for key in TRAIN_SETTINGS if key in config["train"]}


# What a run depends on besides its wildcards and inputs: recorded as config_sha256 in
# metrics.json. Not the whole config: a param that changes reruns every run, and adding a
# size, a figure option or more memory must not retrain the grid.
TRAIN_CONFIG_SHA256 = sha256_json(
    {"seed": config["seed"], "image_size": config["image_size"], "folds": config["folds"],
     "images_per_patient": config["images_per_patient"],
     "holdout_fraction": config["holdout_fraction"], "train": train_settings()})


def train_mem_mb(wildcards, attempt):
    """config train.mem_mb plus the run's images and masks held in memory (with the room
    their checks take), times the attempt."""
    data_mb = int(wildcards.size) * config["image_size"] ** 2 * 5 * 1.5 / 2**20
    return int(config["train"]["mem_mb"] + data_mb) * attempt


rule train:
    input:
        images="results/prepared/images.npy",
        masks="results/prepared/masks.npy",
        store="results/prepared/store.json",
        manifest="results/splits/size{size}.json",
    output:
        metrics=f"{RUN_DIR}/metrics.json",
        history=f"{RUN_DIR}/history.csv",
    log:
        "logs/train/size{size}/{backbone}/lr{lr}_reg{reg}/fold{fold}.log",
    params:
        seed=config["seed"],
        config_sha256=TRAIN_CONFIG_SHA256,
        **train_settings(),
    threads: config["train"]["threads"]
    resources:
        mem_mb=train_mem_mb,
        runtime=lambda wildcards, attempt: config["train"]["runtime"] * attempt,
        gpu=config["train"]["gpus"],
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
