# Perturb-seq mode (config 'perturbseq', screens in their own sheet): per screen, one batched elastic net over
# all response genes (perturbations one-hot against the control, covariates unpenalised, lambda by path
# cross-validation), gene programmes from the coefficient matrix, and clustered heatmaps.


rule simulate_perturbseq_demo:
    output:
        "resources/demo/perturbseq/{psdemo}.h5ad",
    params:
        spec=perturbseq_demo_spec,
    log:
        "logs/simulate_perturbseq_demo/{psdemo}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/simulate_perturbseq_demo.py"


rule perturbseq_fit:
    input:
        perturbseq_input,
    output:
        coefficients=report(
            "results/perturbseq/{screen}/coefficients.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "perturbations x genes coefficients"},
        ),
        programmes=report(
            "results/perturbseq/{screen}/programmes.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "gene programmes"},
        ),
        programme_scores=report(
            "results/perturbseq/{screen}/programme_scores.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "programme scores"},
        ),
        gene_scores="results/perturbseq/{screen}/gene_scores.tsv",
        summary="results/perturbseq/{screen}/perturbseq.json",
    params:
        spec=perturbseq_spec,
        settings=config["perturbseq"],
    log:
        "logs/perturbseq_fit/{screen}.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/perturbseq_fit.py"


rule perturbseq_heatmaps:
    input:
        coefficients="results/perturbseq/{screen}/coefficients.tsv",
        programmes="results/perturbseq/{screen}/programmes.tsv",
        programme_scores="results/perturbseq/{screen}/programme_scores.tsv",
    output:
        coefficients_png=report(
            "results/report/perturbseq/{screen}/coefficients_heatmap.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "perturbation effects"},
        ),
        scores_png=report(
            "results/report/perturbseq/{screen}/programme_scores_heatmap.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "programme scores"},
        ),
    log:
        "logs/perturbseq_heatmaps/{screen}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/perturbseq_heatmaps.py"
