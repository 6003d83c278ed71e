# Input functions of the instrument-folder and AnnData rules (rules/anndata.smk) and of the tissue image under the
# report's maps (rules/report.smk); kept apart from rules/common.smk so the two evolve separately.


def folder_source(wildcards):
    return getattr(SAMPLES[wildcards.sample], "source", None) or {}


def folder_matrix(wildcards):
    return folder_source(wildcards)["matrix"]


def anndata_input(wildcards):
    spec = SAMPLES[wildcards.sample]
    return {
        **({"h5ad": spec.inputs["h5ad"]} if spec.kind == "h5ad" else {}),
        "data": f"results/preprocessed/{wildcards.sample}.npz",
        "fits": sample_fit_dirs(wildcards),
        "tune": [f"results/tune/{wildcards.sample}/{c}/targets" for c in CHUNKS[wildcards.sample]],
        "domains": f"results/report/{wildcards.sample}/domains.tsv",
    }


def tissue_input(wildcards):
    """The sample's .h5ad when its coordinates are .obsm['spatial']: maps are drawn over its tissue image, if any."""
    spec = SAMPLES[wildcards.sample]
    return {"h5ad": spec.inputs["h5ad"]} if spec.kind == "h5ad" and spec.spatial_key == "spatial" else {}


def anndata_files(wildcards):
    """{"fits": fit.json paths, "params": best_params.json paths} of the sample's targets, in sheet order."""
    s = wildcards.sample
    pairs = [(ws_chunks.fit_dir(s, chunk_of(s, t), t), ws_chunks.tune_dir(s, chunk_of(s, t), t)) for t in SAMPLES[s].targets]
    return {"fits": [f"{f}/fit.json" for f, _ in pairs], "params": [f"{p}/best_params.json" for _, p in pairs]}
