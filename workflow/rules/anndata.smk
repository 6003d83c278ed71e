# Instrument folders in, AnnData out: a Space Ranger / Xenium folder of the sample sheet becomes the sample's
# .h5ad (results/input/), and every sample's results go back into AnnData (results/anndata/).


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


rule anndata:
    input:
        unpack(anndata_input),
    output:
        "results/anndata/{sample}.h5ad",
    params:
        files=anndata_files,
    log:
        "logs/anndata/{sample}.log",
    conda:
        "../../envs/s3r-cpu.yaml"
    script:
        "../../scripts/write_anndata.py"
