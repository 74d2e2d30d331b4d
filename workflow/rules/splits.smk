# Stage 3: one split manifest per dataset size: holdout test patients, development
# patients and their folds (patient-disjoint, nested across sizes), per repeat.


rule splits:
    input:
        sample="<results>/cohort/sample.csv",
    output:
        "<results>/splits/size{size}.json",
    log:
        "<logs>/splits/size{size}.log",
    conda:
        "../../envs/cohort.yaml"
    params:
        folds=config["folds"],
        seed=config["seed"],
        images_per_patient=config["images_per_patient"],
        holdout_fraction=config["holdout_fraction"],
        repeats=size_repeats,
    script:
        "../scripts/splits.py"
