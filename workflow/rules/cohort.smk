# Stage 1: the cohort. With `cohort.source: phantom` the workflow first writes a synthetic
# cohort in the LVSC layout; the reader of `cohort.source` (lvsc, acdc, mnms, sunnybrook,
# folders) chooses the sample from file names and headers, no pixels.


rule phantom:
    output:
        directory(PHANTOM_DIR),
    log:
        "<logs>/phantom.log",
    conda:
        "../../envs/cohort.yaml"
    params:
        patients=config["cohort"]["patients"],
        seed=config["cohort"]["phantom"]["seed"],
        slices=config["cohort"]["phantom"]["slices"],
        phases=config["cohort"]["phantom"]["phases"],
        matrix=config["cohort"]["phantom"]["matrix"],
        layout=config["cohort"]["phantom"]["layout"],
    script:
        "../scripts/phantom.py"


rule cohort:
    input:
        cohort=cohort_dir(),
    output:
        sample="<results>/cohort/sample.csv",
    log:
        "<logs>/cohort.log",
    conda:
        "../../envs/cohort.yaml"
    threads: config["prepare"]["workers"]
    params:
        images_per_patient=config["images_per_patient"],
        source=cohort_reader(),
        options=cohort_reader_options(),
    script:
        "../scripts/cohort.py"
