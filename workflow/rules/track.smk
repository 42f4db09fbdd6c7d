# MLflow: one local job imports every run's files into the store, so no two processes ever write
# the same SQLite file (jobs on different nodes finishing together would otherwise collide).


rule track:
    input:
        records=all_run_records(),
    output:
        summary=f"{RESULTS}/mlflow/imported.json",
    log:
        f"{LOGS}/track.log",
    conda:
        "../envs/calql.yaml"
    threads: threads_of("track")
    resources:
        **slurm_resources("track"),
    params:
        config=job_config,
        runs_dir=runs_dir,
        n_runs=lambda wildcards, input: len(input.records),
        key=rerun_keys.track_key(config),
    message:
        "Importing {params.n_runs} run phases into MLflow"
    shell:
        "python -m calql track --config {params.config} --runs-dir {params.runs_dir}"
        " --summary {output.summary} > {log} 2>&1"
