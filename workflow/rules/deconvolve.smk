# Spatially smooth cell-type deconvolution when config enables it: the components mode for samples with a
# 'scores' column, proportions (λ chosen by held-out genes) for samples with a 'reference' column.


rule deconvolve:
    wildcard_constraints:
        sample=samples_pattern(deconvolve_samples()),
    input:
        unpack(deconvolve_input),
    output:
        proportions="results/deconvolution/{sample}/proportions.csv",
        mixture="results/deconvolution/{sample}/mixture.csv",
        dictionary="results/deconvolution/{sample}/dictionary.csv",
        edge_weights="results/deconvolution/{sample}/edge_weights.csv",
        summary="results/deconvolution/{sample}/deconvolve.json",
    params:
        spec=deconvolve_params,
    log:
        "logs/deconvolve/{sample}.log",
    threads: ws_startup.job_threads(config, 2)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/s3r-cuda.yaml"
    script:
        "../../scripts/deconvolve.py"


rule deconvolve_proportions:
    wildcard_constraints:
        sample=samples_pattern(proportions_samples()),
    input:
        unpack(proportions_input),
    output:
        proportions="results/deconvolution/{sample}/proportions.csv",
        edge_weights="results/deconvolution/{sample}/edge_weights.csv",
        lambda_choice="results/deconvolution/{sample}/lambda_choice.csv",
        summary="results/deconvolution/{sample}/deconvolve.json",
    params:
        spec=proportions_params,
    log:
        "logs/deconvolve_proportions/{sample}.log",
    threads: ws_startup.job_threads(config, 2)
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/s3r-cuda.yaml"
    script:
        "../../scripts/deconvolve.py"
