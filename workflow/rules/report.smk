# The report: per (sample, target) figures and tables, and one batch summary table.


# Per chunk of targets of a sample, one directory per target: the fit's report (maps, heatmap by spatial domain,
# feature table with CV stability, convergence, observed vs fitted, and the tuning evidence when tuning ran).
# Figures are PNGs (report.vector adds an SVG or PDF copy). One job per chunk, so the job count does not grow with the targets.
rule fit_report:
    input:
        unpack(fit_report_input),
    output:
        report(
            directory("results/report/{sample}/{chunk}"),
            patterns=["{target}/{figure}.png", "{target}/{figure}.tsv"],
            caption="../report/fit_report.rst",
            category="{sample}",
            subcategory="{target}",
            labels={"sample": "{sample}", "target": "{target}", "figure": "{figure}"},
        ),
    params:
        targets=chunk_targets,
        max_features=config["report"]["max_features"],
        domains_k=config["report"]["domains_k"],
        vector=config["report"]["vector"],
    log:
        "logs/fit_report/{sample}/{chunk}.log",
    threads: ws_startup.job_threads(config, 2)
    priority: after_tuning_priority
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/fit_report.py"


# Per sample: spatial domains over all its targets' coefficient maps, and the coefficient programmes.
rule sample_report:
    input:
        unpack(tissue_input),
        fits=sample_fit_dirs,
    output:
        domains=report(
            "results/report/{sample}/domains.png",
            caption="../report/domains.rst",
            category="{sample}",
            subcategory="sample-wide",
            labels={"sample": "{sample}", "target": "all targets", "figure": "spatial domains"},
        ),
        domains_svg="results/report/{sample}/domains.svg",
        domain_table="results/report/{sample}/domains.tsv",
        heatmap=report(
            "results/report/{sample}/programmes.png",
            caption="../report/programmes.rst",
            category="{sample}",
            subcategory="sample-wide",
            labels={"sample": "{sample}", "target": "all targets", "figure": "coefficient programmes"},
        ),
        heatmap_svg="results/report/{sample}/programmes.svg",
        membership=report(
            "results/report/{sample}/programmes.tsv",
            caption="../report/programme_tables.rst",
            category="{sample}",
            subcategory="sample-wide",
            labels={"sample": "{sample}", "target": "all targets", "figure": "programme membership"},
        ),
        scores=report(
            "results/report/{sample}/programme_scores.tsv",
            caption="../report/programme_tables.rst",
            category="{sample}",
            subcategory="sample-wide",
            labels={"sample": "{sample}", "target": "all targets", "figure": "programme scores"},
        ),
        summary="results/report/{sample}/coefficient_summary.tsv",
    params:
        targets=sample_target_names,
        npz=sample_coefficient_paths,
        settings=config["report"],
    log:
        "logs/sample_report/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/sample_report.py"


# Per deconvolved sample: proportion maps, argmax regions and the learned edge weights.
rule deconvolution_report:
    input:
        proportions="results/deconvolution/{sample}/proportions.csv",
        edge_weights="results/deconvolution/{sample}/edge_weights.csv",
        data="results/preprocessed/{sample}.npz",
    output:
        proportions=report(
            "results/report/{sample}/deconvolution/proportions.png",
            caption="../report/deconvolution.rst",
            category="{sample}",
            subcategory="deconvolution",
            labels={"sample": "{sample}", "target": "cell types", "figure": "proportions"},
        ),
        regions=report(
            "results/report/{sample}/deconvolution/regions.png",
            caption="../report/deconvolution.rst",
            category="{sample}",
            subcategory="deconvolution",
            labels={"sample": "{sample}", "target": "cell types", "figure": "dominant cell type"},
        ),
        edge_weights=report(
            "results/report/{sample}/deconvolution/edge_weights.png",
            caption="../report/deconvolution.rst",
            category="{sample}",
            subcategory="deconvolution",
            labels={"sample": "{sample}", "target": "cell types", "figure": "learned edge weights"},
        ),
        svgs=multiext("results/report/{sample}/deconvolution/", "proportions.svg", "regions.svg", "edge_weights.svg"),
        regions_table="results/report/{sample}/deconvolution/regions.csv",
    log:
        "logs/deconvolution_report/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/deconvolution_report.py"


# Per batch: one row per (sample, target), with the tuning's CV loss of the chosen parameters.
rule summary:
    input:
        fits=fit_dirs,
        params=tune_dirs,
        graphs=expand("results/graphs/{sample}.json", sample=SAMPLES),
    params:
        pairs=fit_params_pairs(),
    output:
        report(
            "results/report/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "all samples and targets"},
        ),
    log:
        "logs/summary.log",
    localrule: True
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/summary.py"
