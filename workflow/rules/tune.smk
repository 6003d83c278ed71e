# Model parameters per (sample, target). fit_final always reads results/tune/{sample}/{target}/best_params.json:
# {"params": <S3R keyword arguments>, "source": "tune" | "config", ...}.
#
# With tuning on, each (sample, target) runs R synchronous rounds of Optuna ask -> evaluate -> tell as jobs:
# tune_suggest (local) rebuilds the study from earlier rounds' result files and asks a batch of trials;
# tune_fold (GPU, one job per fold) solves the whole batch on its fold, warm-started from its own earlier
# rounds; tune_tell (local) records mean and spread of the CV loss; tune_select picks the parameters and
# exports the study once for optuna-dashboard. Jobs share only files, never a database.

if config["tune"]["enabled"]:

    rule tune_suggest:
        input:
            previous=tune_previous_results,
        output:
            "results/tune/{sample}/{target}/round_{round}/trials.json",
        params:
            settings=tune_settings,
        log:
            "logs/tune/{sample}/{target}/suggest_{round}.log",
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_suggest.py"

    rule tune_fold:
        input:
            data="results/preprocessed/{sample}.npz",
            trials="results/tune/{sample}/{target}/round_{round}/trials.json",
            warm=tune_warm_states,
        output:
            scores="results/tune/{sample}/{target}/round_{round}/fold_{fold}.json",
            state="results/tune/{sample}/{target}/round_{round}/fold_{fold}.npz",
        params:
            settings=tune_settings,
        log:
            "logs/tune/{sample}/{target}/round_{round}_fold_{fold}.log",
        threads: 1
        resources:
            gpu=1,
            mem_mb=4000,
            runtime=60,
        conda:
            "../../envs/s3r-cuda.yaml"
        script:
            "../../scripts/tune_fold.py"

    rule tune_tell:
        input:
            trials="results/tune/{sample}/{target}/round_{round}/trials.json",
            folds=tune_fold_scores,
        output:
            "results/tune/{sample}/{target}/round_{round}/results.json",
        log:
            "logs/tune/{sample}/{target}/tell_{round}.log",
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_tell.py"

    rule tune_select:
        input:
            results=tune_all_results,
        output:
            best="results/tune/{sample}/{target}/best_params.json",
            trials=report(
                "results/tune/{sample}/{target}/trials.tsv",
                caption="../report/tuning.rst",
                category="Tuning",
                labels={"sample": "{sample}", "target": "{target}", "table": "trials"},
            ),
            folds="results/tune/{sample}/{target}/fold_scores.tsv",
            study="results/tune/{sample}/{target}/study.journal",
        params:
            settings=tune_settings,
            model=model_params,
        log:
            "logs/tune/{sample}/{target}/select.log",
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_select.py"

else:

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
