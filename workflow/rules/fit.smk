# The final fit per (sample, target): the expensive step, so it asks for a GPU (profiles route it).


rule fit_final:
    input:
        data="results/preprocessed/{sample}.npz",
        graph="results/graphs/{sample}.npz",
        params="results/tune/{sample}/{target}/best_params.json",
    output:
        coefficients="results/fits/{sample}/{target}/coefficients.csv",
        npz="results/fits/{sample}/{target}/coefficients.npz",
        fit="results/fits/{sample}/{target}/fit.json",
    log:
        "logs/fit_final/{sample}/{target}.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/s3r-cuda.yaml"
    script:
        "../../scripts/fit_final.py"
