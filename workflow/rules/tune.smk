# Model parameters per chunk of targets of one sample (s3r.workflow.chunks): fit_final reads each target's
# results/tune/{sample}/{chunk}/targets/{target}/best_params.json ({"params", "source": "tune" | "config", ...}).
#
# With tuning on, each chunk runs R synchronous rounds of Optuna ask -> evaluate -> tell as jobs; every target
# keeps its own study, the chunk's files hold the targets' documents side by side: tune_suggest (local) rebuilds
# each target's study from earlier rounds' result files and asks its batch of trials; tune_fold (GPU, one job per
# fold) solves every target's batch on its fold in one batched program, warm-started from its own earlier rounds;
# tune_tell (local) records mean and spread of each CV loss; tune_select picks each target's parameters and writes
# its tuning directory (as `s3r tune` does) with the study for optuna-dashboard. Jobs share only files.

if config["tune"]["enabled"]:

    rule tune_suggest:
        input:
            previous=tune_previous_results,
        output:
            "results/tune/{sample}/{chunk}/round_{round}/trials.json",
        params:
            settings=tune_settings,
            targets=chunk_targets,
        log:
            "logs/tune/{sample}/{chunk}/suggest_{round}.log",
        priority: tuning_priority
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_suggest.py"

    rule tune_fold:
        input:
            data="results/preprocessed/{sample}.npz",
            graph="results/graphs/{sample}.npz",
            trials="results/tune/{sample}/{chunk}/round_{round}/trials.json",
            warm=tune_warm_states,
        output:
            scores="results/tune/{sample}/{chunk}/round_{round}/fold_{fold}.json",
            # every trial's solutions for the later rounds' warm starts; select keeps the chosen trial's per target,
            # then these go (200 targets × 15 fold jobs at 3,500 × 25 would hold ~11 GB)
            state=temp("results/tune/{sample}/{chunk}/round_{round}/fold_{fold}.npz"),
        params:
            settings=tune_settings,
            targets=chunk_targets,
        log:
            "logs/tune/{sample}/{chunk}/round_{round}_fold_{fold}.log",
        priority: tuning_priority
        threads: ws_startup.job_threads(config, 1)
        resources:
            gpu=1,
            mem_mb=tune_fold_mem_mb,
            runtime=tune_fold_runtime,
        retries: 2
        conda:
            "../../envs/s3r-cuda.yaml"
        script:
            "../../scripts/tune_fold.py"

    rule tune_tell:
        input:
            trials="results/tune/{sample}/{chunk}/round_{round}/trials.json",
            folds=tune_fold_scores,
        output:
            "results/tune/{sample}/{chunk}/round_{round}/results.json",
        params:
            targets=chunk_targets,
        log:
            "logs/tune/{sample}/{chunk}/tell_{round}.log",
        priority: tuning_priority
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_tell.py"

    rule tune_select:
        input:
            results=tune_all_results,
            states=tune_all_states,
        output:
            targets=directory("results/tune/{sample}/{chunk}/targets"),
            trials=report(
                "results/tune/{sample}/{chunk}/trials.tsv",
                caption="../report/trials.rst",
                category="Tuning",
                labels={"sample": "{sample}", "targets": "{chunk}", "table": "trials"},
            ),
        params:
            settings=tune_settings,
            model=model_params,
            targets=chunk_targets,
            states=tune_state_keys,
        log:
            "logs/tune/{sample}/{chunk}/select.log",
        priority: after_tuning_priority
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/tune_select.py"

else:

    rule params_from_config:
        output:
            directory("results/tune/{sample}/{chunk}/targets"),
        params:
            settings=model_params,
            targets=chunk_targets,
        log:
            "logs/params/{sample}/{chunk}.log",
        localrule: True
        conda:
            "../../envs/s3r-cpu.yaml"
        script:
            "../../scripts/params_from_config.py"
