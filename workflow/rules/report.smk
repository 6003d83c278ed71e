# The report: per (sample, target) figures and tables, and one batch summary table.


# Per (sample, target): the fit's report (maps, heatmap by spatial domain, feature table with CV stability,
# convergence, observed vs fitted, and the tuning evidence when tuning ran). Figures carry an SVG beside the PNG.
if config["tune"]["enabled"]:

    rule fit_report:
        input:
            npz="results/fits/{sample}/{target}/coefficients.npz",
            fit="results/fits/{sample}/{target}/fit.json",
            best="results/tune/{sample}/{target}/best_params.json",
            results=tune_all_results,
            states=tune_all_states,
        output:
            maps=report(
                "results/report/{sample}/{target}/coefficient_maps.png",
                caption="../report/coefficient_maps.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "coefficient maps"},
            ),
            heatmap=report(
                "results/report/{sample}/{target}/heatmap.png",
                caption="../report/heatmap.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "heatmap by domain"},
            ),
            features=report(
                "results/report/{sample}/{target}/features.tsv",
                caption="../report/features.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "selected features"},
            ),
            convergence=report(
                "results/report/{sample}/{target}/convergence.png",
                caption="../report/convergence.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "solver convergence"},
            ),
            observed=report(
                "results/report/{sample}/{target}/observed_vs_predicted.png",
                caption="../report/observed_vs_predicted.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "observed vs fitted"},
            ),
            domains="results/report/{sample}/{target}/domains.tsv",
            history=report(
                "results/report/{sample}/{target}/tuning_history.png",
                caption="../report/tuning.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "tuning history"},
            ),
            parameters=report(
                "results/report/{sample}/{target}/tuning_parameters.png",
                caption="../report/tuning.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "CV loss by parameter"},
            ),
            folds=report(
                "results/report/{sample}/{target}/tuning_folds.png",
                caption="../report/tuning.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "CV fold spread"},
            ),
            trials="results/report/{sample}/{target}/trials.tsv",
        params:
            max_features=config["report"]["max_features"],
            domains_k=config["report"]["domains_k"],
        log:
            "logs/fit_report/{sample}/{target}.log",
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/fit_report.py"

else:

    rule fit_report:
        input:
            npz="results/fits/{sample}/{target}/coefficients.npz",
            fit="results/fits/{sample}/{target}/fit.json",
        output:
            maps=report(
                "results/report/{sample}/{target}/coefficient_maps.png",
                caption="../report/coefficient_maps.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "coefficient maps"},
            ),
            heatmap=report(
                "results/report/{sample}/{target}/heatmap.png",
                caption="../report/heatmap.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "heatmap by domain"},
            ),
            features=report(
                "results/report/{sample}/{target}/features.tsv",
                caption="../report/features.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "selected features"},
            ),
            convergence=report(
                "results/report/{sample}/{target}/convergence.png",
                caption="../report/convergence.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "solver convergence"},
            ),
            observed=report(
                "results/report/{sample}/{target}/observed_vs_predicted.png",
                caption="../report/observed_vs_predicted.rst",
                category="{sample}",
                subcategory="{target}",
                labels={"sample": "{sample}", "target": "{target}", "figure": "observed vs fitted"},
            ),
            domains="results/report/{sample}/{target}/domains.tsv",
        params:
            max_features=config["report"]["max_features"],
            domains_k=config["report"]["domains_k"],
        log:
            "logs/fit_report/{sample}/{target}.log",
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/fit_report.py"


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
