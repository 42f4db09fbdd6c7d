# Training: offline pre-training (methods that pre-train), then online fine-tuning, per task x method x seed.
# Each phase writes metrics.csv, final.pt and run.json (docs/design.md, "Run files"); a killed job
# resumes from RUN/<phase>/checkpoints/last.pt, which is not an output and so survives a rerun.
# RUN (common.smk) is the run folder of calql.runs.RunKey.


rule pretrain:
    input:
        dataset=rules.label.output.labeled,
    output:
        metrics=f"{RUN}/pretrain/metrics.csv",
        checkpoint=f"{RUN}/pretrain/final.pt",
        record=f"{RUN}/pretrain/run.json",
    log:
        f"{LOGS}/pretrain/{RunKey.PATTERN}.log",
    benchmark:
        f"{LOGS}/benchmarks/pretrain/{RunKey.PATTERN}.tsv"
    conda:
        "../envs/calql.yaml"
    threads: threads_of("pretrain")
    resources:
        **slurm_resources("pretrain"),
    params:
        config=job_config,
        key=train_key("pretrain"),
        run_dir=run_dir,
    message:
        "Pre-training {wildcards.method} offline on {wildcards.task}, seed {wildcards.seed}"
    shell:
        "python -m calql pretrain --config {params.config} --task {wildcards.task}"
        " --method {wildcards.method} --seed {wildcards.seed}"
        " --dataset {input.dataset} --run-dir {params.run_dir} > {log} 2>&1"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        metrics=f"{RUN}/finetune/metrics.csv",
        checkpoint=f"{RUN}/finetune/final.pt",
        record=f"{RUN}/finetune/run.json",
    log:
        f"{LOGS}/finetune/{RunKey.PATTERN}.log",
    benchmark:
        f"{LOGS}/benchmarks/finetune/{RunKey.PATTERN}.tsv"
    conda:
        "../envs/calql.yaml"
    threads: threads_of("finetune")
    resources:
        **slurm_resources("finetune"),
    params:
        config=job_config,
        key=train_key("finetune"),
        run_dir=run_dir,
        init=lambda wildcards, input: f"--init {input.init}" if "init" in input.keys() else "",
    message:
        "Fine-tuning {wildcards.method} online on {wildcards.task}, seed {wildcards.seed}"
    shell:
        "python -m calql finetune --config {params.config} --task {wildcards.task}"
        " --method {wildcards.method} --seed {wildcards.seed}"
        " --dataset {input.dataset} {params.init} --run-dir {params.run_dir} > {log} 2>&1"
