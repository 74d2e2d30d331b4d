# The config turned into the study's grid, wildcard constraints and input functions.
# The library, unetcap, is an installed package (setup.sh; envs/install-unetcap.sh in the
# rules' conda environments).
import os
import re
from functools import cache
from pathlib import Path

from snakemake.utils import validate

from unetcap import UnetcapError
from unetcap.cohort import count_patients
from unetcap.phantom.layouts import FOLDERS_OPTIONS, SERIES_MAP
from unetcap.provenance import sha256_json
from unetcap.splits import check_sizes, repeats_per_size
from unetcap.study import format_number, study_name
from unetcap.train.settings import Settings

# One folder of results and one of logs per study (docs/design.md §7): rules write
# "<results>/..." and "<logs>/...", these pathvars say where. The name comes from the
# config files given on the command line unless the config sets `study`; config/config.yaml's
# own `study` counts only when it is the study run, not for the config files laid over it.
given = workflow.config_settings.overwrite_config if workflow.overwrite_configfiles else config
config["study"] = study_name(given, workflow.overwrite_configfiles, "config/config.yaml")
validate(config, schema="../schemas/config.schema.yaml", set_default=True)


pathvars:
    results=f"results/{config['study']}",
    logs=f"logs/{config['study']}",


PHANTOM_DIR = "<results>/phantom"
# The runs of each training backend (config train.backend) in their own folders, so that
# switching it never overwrites a run: TensorFlow's under runs/, PyTorch's under runs/pytorch/.
BACKEND_DIR = "" if config["train"]["backend"] == "tensorflow" else f"{config['train']['backend']}/"
RUN_DIR = f"<results>/runs/{BACKEND_DIR}size{{size}}/{{backbone}}/lr{{lr}}_reg{{reg}}/fold{{fold}}"
# The conda environment (--sdm conda) of rule train, per backend.
TRAIN_ENV = {"tensorflow": "../../envs/train.yaml", "pytorch": "../../envs/train-pytorch.yaml"}[
    config["train"]["backend"]
]


def cohort_dir():
    """The folder the cohort is read from: the LVSC data, or the phantom written by this workflow."""
    if config["cohort"]["source"] == "phantom":
        return PHANTOM_DIR
    return config["cohort"]["path"]


def cohort_reader():
    """The reader of the cohort: `cohort.source`, or the layout the phantom is written in."""
    if config["cohort"]["source"] == "phantom":
        return config["cohort"]["phantom"]["layout"]
    return config["cohort"]["source"]


def cohort_reader_options():
    """What the cohort's reader needs besides its folder (config `cohort`: the labels, the
    policy for patients with few images, each format's own settings)."""
    keys = ("labels", "few_images", "info", "series_map", "folders")
    options = {key: config["cohort"][key] for key in keys if key in config["cohort"]}
    if config["cohort"]["source"] == "phantom" and cohort_reader() == "folders":
        options["folders"] = FOLDERS_OPTIONS
    if config["cohort"]["source"] == "phantom" and cohort_reader() == "sunnybrook":
        options.setdefault("series_map", f"results/{config['study']}/phantom/{SERIES_MAP}")
    return options


def cohort_patients():
    """Patients in the cohort: counted when its folder is there, else from the config."""
    if config["cohort"]["source"] != "phantom" and Path(cohort_dir()).is_dir():
        return count_patients(cohort_dir(), config["cohort"]["source"], cohort_reader_options())
    return config["cohort"]["patients"]


def one_of(values):
    """A wildcard regex that matches exactly the configured values' path texts."""
    return "|".join(re.escape(v) for v in values)


try:
    check_sizes(
        config["sizes"], cohort_patients(), config["folds"], config["images_per_patient"], config["holdout_fraction"]
    )
    REPEATS = repeats_per_size(config["sizes"], config["repeats"])
except UnetcapError as err:
    raise WorkflowError(str(err))


def size_folds(size):
    """The folds of a size: `folds` per repeat (repeat r's are r * folds .. r * folds + folds - 1)."""
    return range(config["folds"] * REPEATS[int(size)])


def size_repeats(wildcards):
    """The repeats of the splits job's size (config `repeats`)."""
    return REPEATS[int(wildcards.size)]


wildcard_constraints:
    size=one_of(str(s) for s in config["sizes"]),
    backbone=one_of(config["backbones"]),
    lr=one_of(format_number(x) for x in config["lrs"]),
    reg=one_of(format_number(x) for x in config["regs"]),
    fold=one_of(str(f) for f in range(config["folds"] * max(REPEATS.values()))),
    pack=r"\d+",


def run_dirs():
    """Every training run of the grid: sizes x backbones x lrs x regs x folds (folds x
    repeats of each size)."""
    return [
        run
        for size in config["sizes"]
        for run in expand(
            RUN_DIR,
            size=size,
            backbone=config["backbones"],
            lr=[format_number(x) for x in config["lrs"]],
            reg=[format_number(x) for x in config["regs"]],
            fold=size_folds(size),
        )
    ]


def runs_per_gpu():
    """Training runs packed into one Slurm job on one GPU: the environment variable
    UNETCAP_RUNS_PER_GPU, 1 when unset (the Slurm profile sets it, by default to 4). The
    submitting Snakemake and the jobs' own (which inherit the environment) read the same
    value, and so build the same packs."""
    value = os.environ.get("UNETCAP_RUNS_PER_GPU", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise WorkflowError(
            f"UNETCAP_RUNS_PER_GPU={value!r}: give a whole number of training runs per GPU, "
            "1 or more (1: one run per Slurm job)"
        )
    return int(value)


RUNS_PER_GPU = runs_per_gpu()
# Above one run per GPU, the runs of a pack and its pack job are one group job (one Slurm
# job); None: no group, every run its own job (local runs ignore groups anyway).
TRAIN_GROUP = "gpu" if RUNS_PER_GPU > 1 else None


@cache
def packs():
    """The grid's runs in packs of RUNS_PER_GPU (the last one may be smaller), in grid
    order: a pack holds mostly folds of one size and encoder, which take about as long."""
    runs = run_dirs()
    return [runs[i : i + RUNS_PER_GPU] for i in range(0, len(runs), RUNS_PER_GPU)]


def pack_flags():
    """Every pack's flag file, a target of `all` (none with one run per GPU: no packs)."""
    if RUNS_PER_GPU == 1:
        return []
    return [f"<results>/packs/pack{pack}.done" for pack in range(len(packs()))]


def pack_metrics(wildcards):
    """The metrics.json of the pack job's runs."""
    return [f"{run}/metrics.json" for run in packs()[int(wildcards.pack)]]


# Keys of config `train` that the training library takes (the rest are job resources).
TRAIN_SETTINGS = Settings.names()


def train_settings():
    """How every run trains: config `train` without the job resources."""
    return {key: config["train"][key] for key in TRAIN_SETTINGS if key in config["train"]}


# What a run depends on besides its wildcards and inputs: recorded as config_sha256 in
# metrics.json. Not the whole config: a param that changes reruns every run, and adding a
# size, a figure option or more memory must not retrain the grid.
TRAIN_CONFIG_SHA256 = sha256_json(
    {
        "seed": config["seed"],
        "image_size": config["image_size"],
        "roi": config["roi"],
        "folds": config["folds"],
        "images_per_patient": config["images_per_patient"],
        "holdout_fraction": config["holdout_fraction"],
        "train": train_settings(),
    }
)


def holdout_table():
    """The per-patient holdout scores the sample-size curves resample (merge's holdout.csv):
    only when they are fitted on the holdout pool, so that a study whose table predates it
    (analysis.sample_size.metric: test_dice) rebuilds from metrics.csv alone."""
    if config["analysis"]["sample_size"]["metric"] == "holdout_dice":
        return "<results>/holdout.csv"
    return []


def train_mem_mb(wildcards, attempt):
    """config train.mem_mb plus the run's images and masks held in memory (with the room
    their checks take), times the attempt."""
    data_mb = int(wildcards.size) * config["image_size"] ** 2 * 5 * 1.5 / 2**20
    return int(config["train"]["mem_mb"] + data_mb) * attempt
