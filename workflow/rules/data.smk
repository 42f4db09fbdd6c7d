# Offline data: one raw dataset and one labeled copy per task, shared by every method and seed.


rule dataset:
    output:
        dataset=raw_dataset_of(RESULTS, "{task}"),
    log:
        f"{LOGS}/dataset/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/dataset/{{task}}.tsv"
    conda:
        "../envs/calql.yaml"
    threads: threads_of("dataset")
    resources:
        **slurm_resources("dataset"),
    params:
        config=job_config,
        key=data_key,
    message:
        "Fetching or generating the offline dataset of task {wildcards.task}"
    shell:
        "python -m calql dataset --config {params.config} --task {wildcards.task}"
        " --out {output.dataset} > {log} 2>&1"


rule label:
    input:
        dataset=rules.dataset.output.dataset,
    output:
        labeled=f"{RESULTS}/labeled/{{task}}.hdf5",
    log:
        f"{LOGS}/label/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/label/{{task}}.tsv"
    conda:
        "../envs/calql.yaml"
    threads: threads_of("label")
    resources:
        **slurm_resources("label"),
    params:
        config=job_config,
        key=label_key,
    message:
        "Labeling Monte-Carlo returns of task {wildcards.task}"
    shell:
        "python -m calql --quiet label --config {params.config} --task {wildcards.task}"
        " --dataset {input.dataset} --out {output.labeled} > {log} 2>&1"
