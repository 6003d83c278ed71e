# Read, check, normalise and standardise one sample's input into the binary every fit of it reads.


rule preprocess:
    input:
        unpack(preprocess_input),
    output:
        "results/preprocessed/{sample}.npz",
    params:
        spec=preprocess_params,
    log:
        "logs/preprocess/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/preprocess.py"
