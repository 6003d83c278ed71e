# Perturb-seq mode (config 'perturbseq', screens in their own sheet): per screen, one batched elastic net over
# all response genes (perturbations one-hot against the control, covariates unpenalised, lambda by path
# cross-validation), gene programmes and perturbation modules from the coefficient matrix, per-cell programme
# scores tested against the control, enrichment in the screen's gene sets, and the figures of seed 002.


rule simulate_perturbseq_demo:
    output:
        h5ad="resources/demo/perturbseq/{psdemo}.h5ad",
        gmt="resources/demo/perturbseq/{psdemo}.gmt",
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
        unpack(perturbseq_input),
    output:
        coefficients=report(
            "results/perturbseq/{screen}/coefficients.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "W: perturbations x genes coefficients"},
        ),
        covariate_coefficients=report(
            "results/perturbseq/{screen}/covariate_coefficients.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "M: covariates x genes coefficients"},
        ),
        programmes=report(
            "results/perturbseq/{screen}/programmes.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "gene programmes"},
        ),
        modules="results/perturbseq/{screen}/modules.tsv",
        programme_scores="results/perturbseq/{screen}/programme_scores.tsv",
        gene_scores="results/perturbseq/{screen}/gene_scores.tsv",
        cell_scores="results/perturbseq/{screen}/cell_scores.tsv",
        programme_tests=report(
            "results/perturbseq/{screen}/programme_tests.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "programme score minus control, tests"},
        ),
        enrichment=report(
            "results/perturbseq/{screen}/enrichment.tsv",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "table": "programme enrichment"},
        ),
        alpha_performance="results/perturbseq/{screen}/alpha_performance.tsv",
        summary="results/perturbseq/{screen}/perturbseq.json",
    params:
        spec=perturbseq_spec,
        settings=config["perturbseq"],
    log:
        "logs/perturbseq_fit/{screen}.log",
    threads: ws_startup.job_threads(config, 2)
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/perturbseq_fit.py"


rule perturbseq_figures:
    input:
        coefficients="results/perturbseq/{screen}/coefficients.tsv",
        programmes="results/perturbseq/{screen}/programmes.tsv",
        modules="results/perturbseq/{screen}/modules.tsv",
        programme_scores="results/perturbseq/{screen}/programme_scores.tsv",
        programme_tests="results/perturbseq/{screen}/programme_tests.tsv",
        alpha_performance="results/perturbseq/{screen}/alpha_performance.tsv",
        enrichment="results/perturbseq/{screen}/enrichment.tsv",
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
            labels={"screen": "{screen}", "figure": "programme mean coefficients"},
        ),
        shifts_png=report(
            "results/report/perturbseq/{screen}/programme_shifts_heatmap.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "programme score minus control"},
        ),
        dotplot_png=report(
            "results/report/perturbseq/{screen}/programme_dotplot.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "programme dot plot"},
        ),
        alpha_png=report(
            "results/report/perturbseq/{screen}/alpha_performance.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "penalty selection"},
        ),
        enrichment_png=report(
            "results/report/perturbseq/{screen}/enrichment.png",
            caption="../report/perturbseq.rst",
            category="Perturb-seq",
            subcategory="{screen}",
            labels={"screen": "{screen}", "figure": "programme enrichment"},
        ),
    log:
        "logs/perturbseq_figures/{screen}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/perturbseq_figures.py"
