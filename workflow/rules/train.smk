# Training: offline pre-training (methods that pre-train), then online fine-tuning, per task x method x seed.
# Each phase writes metrics.csv, final.pt and run.json (docs/design.md, "Run files"); a killed job
# resumes from RUN/<phase>/checkpoints/last.pt, which is not an output and so survives a rerun.
# RUN (common.smk) is the run folder of calql.run_files.RunKey. Each phase reads its run config file
# (RUN_CONFIG), resolved once when the workflow parsed the config (RUN_SPECS) and rewritten
# exactly when that phase's rerun key changes.


rule run_config:
    output:
        run_config=RUN_CONFIG,
    log:
        f"{LOGS}/run_config/{{task}}/{{method}}/{{phase}}.log",
    params:
        key=run_config_key,
    message:
        "Writing the resolved {wildcards.phase} config of {wildcards.method} on {wildcards.task}"
    run:
        write_run_config(wildcards, output.run_config, log[0])


rule pretrain:
    input:
        run_config=run_config_of("pretrain"),
        dataset=rules.label.output.labeled,
    output:
        metrics=phase_file(RUN, "pretrain", METRICS_CSV),
        checkpoint=phase_file(RUN, "pretrain", FINAL_PT),
        record=phase_file(RUN, "pretrain", RUN_JSON),
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
        key=train_key("pretrain"),
        run_dir=run_dir,
        live_tracking=live_tracking_option,
    message:
        "Pre-training {wildcards.method} offline on {wildcards.task}, seed {wildcards.seed}"
    shell:
        "python -m calql pretrain --run-config {input.run_config}{params.live_tracking}"
        " --seed {wildcards.seed} --dataset {input.dataset} --run-dir {params.run_dir} > {log} 2>&1"


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        metrics=phase_file(RUN, "finetune", METRICS_CSV),
        checkpoint=phase_file(RUN, "finetune", FINAL_PT),
        record=phase_file(RUN, "finetune", RUN_JSON),
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
        key=train_key("finetune"),
        run_dir=run_dir,
        live_tracking=live_tracking_option,
        init=lambda wildcards, input: f"--init {input.init}" if "init" in input.keys() else "",
    message:
        "Fine-tuning {wildcards.method} online on {wildcards.task}, seed {wildcards.seed}"
    shell:
        "python -m calql finetune --run-config {input.run_config}{params.live_tracking}"
        " --seed {wildcards.seed} --dataset {input.dataset} {params.init} --run-dir {params.run_dir} > {log} 2>&1"
