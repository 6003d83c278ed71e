# Input functions of the instrument-folder and AnnData rules (rules/anndata.smk) and of the tissue image under the
# report's maps (rules/report.smk); kept apart from rules/common.smk so the two evolve separately.


def folder_source(wildcards):
    return getattr(SAMPLES[wildcards.sample], "source", None) or {}


def folder_matrix(wildcards):
    return folder_source(wildcards)["matrix"]


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


def tissue_input(wildcards):
    """The sample's .h5ad when its coordinates are .obsm['spatial']: maps are drawn over its tissue image, if any."""
    spec = SAMPLES[wildcards.sample]
    return {"h5ad": spec.inputs["h5ad"]} if spec.kind == "h5ad" and spec.spatial_key == "spatial" else {}
