# Stage 2: read, check and decode the sampled images into one prepared store (float32 in
# [0, 1], binary masks) with its index table.


rule prepare:
    input:
        sample="<results>/cohort/sample.csv",
    output:
        images="<results>/prepared/images.npy",
        masks="<results>/prepared/masks.npy",
        index="<results>/prepared/index.csv",
        store=report("<results>/prepared/store.json", caption="../report/store.rst", category="Data"),
    log:
        "<logs>/prepare.log",
    conda:
        "../../envs/cohort.yaml"
    threads: config["prepare"]["workers"]
    params:
        image_size=config["image_size"],
        roi=config["roi"],
        source=cohort_reader(),
        options=cohort_reader_options(),
    script:
        "../scripts/prepare.py"
