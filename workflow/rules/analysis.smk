# Aggregation, tables and figures: local jobs that read only run files and summary tables.
# File names come from analysis/outputs.py (no matplotlib import at parse time).


rule aggregate:
    input:
        records=all_run_records(),
        metrics=all_metrics(),
    output:
        **{Path(name).stem: summary_output(name) for name in SUMMARY_FILES},
    log:
        f"{LOGS}/analysis/aggregate.log",
    conda:
        "../envs/calql.yaml"
    threads: threads_of("analysis")
    resources:
        **slurm_resources("analysis"),
    params:
        config=job_config,
        key=analysis_key,
        runs_dir=runs_dir,
        out_dir=parent_dir(),
        n_runs=lambda wildcards, input: len(input.records),
    message:
        "Aggregating {params.n_runs} run phases into summary tables"
    shell:
        "python -m analysis aggregate --config {params.config} --runs-dir {params.runs_dir}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule tables:
    input:
        **rules.aggregate.output,
        labeled=expand(rules.label.output.labeled, task=list(config["tasks"])),
    output:
        **{
            f"{name}_md": report(
                f"{SUMMARY}/tables/{name}.md",
                caption=f"../report/{name}_table.rst",
                category="Tables",
            )
            for name in TABLE_NAMES
        },
        **{f"{name}_tex": f"{SUMMARY}/tables/{name}.tex" for name in TABLE_NAMES},
        overview=report(
            f"{SUMMARY}/tables/{OVERVIEW_TABLE}.md",
            caption=f"../report/{OVERVIEW_TABLE}_table.rst",
            category="Tables",
        ),
        # one data-conventions table per task (calql conventions), to check the data of a sweep
        conventions=[
            report(
                f"{SUMMARY}/conventions/{task}.md",
                caption="../report/conventions.rst",
                category="Data conventions",
                labels={"task": task},
            )
            for task in config["tasks"]
        ],
    log:
        f"{LOGS}/analysis/tables.log",
    conda:
        "../envs/calql.yaml"
    threads: threads_of("analysis")
    resources:
        **slurm_resources("analysis"),
    params:
        config=job_config,
        key=analysis_key,
        summary_dir=parent_dir("curves"),
        out_dir=parent_dir(),
        conventions_dir=parent_dir("conventions"),
    message:
        "Writing result tables (Markdown and LaTeX) and each task's data-conventions table"
    shell:
        "python -m analysis tables --config {params.config} --summary-dir {params.summary_dir}"
        " --out-dir {params.out_dir} > {log} 2>&1"
        " && python -m calql conventions --datasets {input.labeled}"
        " --out-dir {params.conventions_dir} >> {log} 2>&1"


rule figures:
    input:
        **rules.aggregate.output,
    output:
        **{
            f"{name}_{fmt}": report(
                f"{RESULTS}/figures/{name}.{fmt}",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": name, "format": fmt},
            )
            for name in FIGURE_NAMES
            for fmt in config["analysis"].get("formats", ["png", "pdf"])
        },
    log:
        f"{LOGS}/analysis/figures.log",
    conda:
        "../envs/calql.yaml"
    threads: threads_of("analysis")
    resources:
        **slurm_resources("analysis"),
    params:
        config=job_config,
        key=analysis_key,
        summary_dir=parent_dir("curves"),
        out_dir=parent_dir(),
    message:
        "Drawing figures"
    shell:
        "python -m analysis figures --config {params.config} --summary-dir {params.summary_dir}"
        " --out-dir {params.out_dir} > {log} 2>&1"
