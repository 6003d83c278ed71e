# Instrument folders in, AnnData out: a Space Ranger / Xenium folder of the sample sheet becomes the sample's
# .h5ad (results/input/), and every sample's results go back into AnnData (results/anndata/).


def folder_source(wildcards):
    return getattr(SAMPLES[wildcards.sample], "source", None) or {}


def folder_matrix(wildcards):
    return folder_source(wildcards)["matrix"]


rule import_folder:
    input:
        matrix=folder_matrix,
    output:
        "results/input/{sample}.h5ad",
    params:
        source=folder_source,
    log:
        "logs/import_folder/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/import_folder.py"


def anndata_input(wildcards):
    spec = SAMPLES[wildcards.sample]
    targets = spec.targets
    return {
        **({"h5ad": spec.inputs["h5ad"]} if spec.kind == "h5ad" else {}),
        "data": f"results/preprocessed/{wildcards.sample}.npz",
        "fits": [f"results/fits/{wildcards.sample}/{t}/fit.json" for t in targets],
        "params": [f"results/tune/{wildcards.sample}/{t}/best_params.json" for t in targets],
        "domains": f"results/report/{wildcards.sample}/domains.tsv",
    }


rule anndata:
    input:
        unpack(anndata_input),
    output:
        "results/anndata/{sample}.h5ad",
    log:
        "logs/anndata/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/write_anndata.py"
