# Model parameters per (sample, target). fit_final always reads results/tune/{sample}/{target}/best_params.json,
# so tuning only has to produce that file: {"params": <S3R keyword arguments>, "source": <where they came
# from>, ...}. With tuning disabled (the default; the Optuna rules come with the tuning issue) it holds config
# 'model' and 'graph' with the sample's overrides.


rule params_from_config:
    output:
        "results/tune/{sample}/{target}/best_params.json",
    params:
        settings=model_params,
    log:
        "logs/params/{sample}/{target}.log",
    localrule: True
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/params_from_config.py"
