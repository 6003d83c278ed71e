# Per (sample, target) coefficient maps and one batch summary table, both in the Snakemake report.


rule coefficient_maps:
    input:
        npz="results/fits/{sample}/{target}/coefficients.npz",
        fit="results/fits/{sample}/{target}/fit.json",
    output:
        report(
            "results/report/{sample}/{target}/coefficient_maps.png",
            caption="../report/coefficient_maps.rst",
            category="Coefficient maps",
            subcategory="{sample}",
            labels={"sample": "{sample}", "target": "{target}"},
        ),
    params:
        max_features=config["report"]["max_features"],
    log:
        "logs/coefficient_maps/{sample}/{target}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/coefficient_maps.py"


rule summary:
    input:
        fits=fit_files,
        graphs=expand("results/graphs/{sample}.json", sample=SAMPLES),
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
