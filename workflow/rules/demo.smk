# Demo inputs, simulated deterministically by s3r.simulate (config 'demo'); real data skips this rule.


rule simulate_demo:
    output:
        x_csv="resources/demo/{demo}/X.csv",
        y_csv="resources/demo/{demo}/Y.csv",
        coords_csv="resources/demo/{demo}/coords.csv",
        h5ad="resources/demo/{demo}.h5ad",
    params:
        spec=demo_spec,
    log:
        "logs/simulate_demo/{demo}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/simulate_demo.py"
