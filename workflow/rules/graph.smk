# One spot graph per sample, shared by all of its fits (and by tuning folds).


rule graph:
    input:
        "results/preprocessed/{sample}.npz",
    output:
        graph="results/graphs/{sample}.npz",
        summary="results/graphs/{sample}.json",
    params:
        settings=graph_params,
    log:
        "logs/graph/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/graph.py"
