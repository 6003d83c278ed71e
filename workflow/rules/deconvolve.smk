# Spatially smooth cell-type deconvolution, per sample with a 'scores' column, when config enables it.


rule deconvolve:
    input:
        unpack(deconvolve_input),
    output:
        proportions="results/deconvolution/{sample}/proportions.csv",
        mixture="results/deconvolution/{sample}/mixture.csv",
        dictionary="results/deconvolution/{sample}/dictionary.csv",
        edge_weights="results/deconvolution/{sample}/edge_weights.csv",
        summary="results/deconvolution/{sample}/deconvolution.json",
    params:
        spec=deconvolve_params,
    log:
        "logs/deconvolve/{sample}.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/s3r-cuda.yaml"
    script:
        "../../scripts/deconvolve.py"
