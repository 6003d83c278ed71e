# The final fits of a chunk of targets of one sample: the expensive step, so it asks for a GPU (profiles route
# it). One fit directory per target inside the chunk's directory (results/fits/{sample}/{chunk}/{target}/).


rule fit_final:
    input:
        data="results/preprocessed/{sample}.npz",
        graph="results/graphs/{sample}.npz",
        params="results/tune/{sample}/{chunk}/targets",
    output:
        directory("results/fits/{sample}/{chunk}"),
    params:
        targets=chunk_targets,
        no_effect=config["tune"]["no_effect"],
    log:
        "logs/fit_final/{sample}/{chunk}.log",
    threads: fit_final_threads
    priority: after_tuning_priority
    resources:
        gpu=1,
        mem_mb=fit_final_mem_mb,
        runtime=fit_final_runtime,
    retries: 2
    conda:
        "../../envs/s3r-cuda.yaml"
    script:
        "../../scripts/fit_final.py"
