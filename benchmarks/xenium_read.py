"""Reading a Xenium outs/ folder of 100k cells × 300 genes: wall time and peak memory (target < 30 s, < 2 GiB).

The folder is written first (10x layouts, tests/tenx_layouts.py: the HDF5 matrix with control probes and
codewords, cells.csv.gz and, with pyarrow, cells.parquet); each read then runs in a fresh Python process so its
peak RSS (ru_maxrss of the child) is the reader's own, imports included. Raw results: benchmarks/out/xenium_read.json.

    python benchmarks/xenium_read.py [--cells 100000] [--genes 300] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from bench_common import provenance

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from s3r.readers import read_xenium
t1 = time.perf_counter()
adata = read_xenium(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "n_obs": adata.n_obs, "n_vars": adata.n_vars, "nnz": int(adata.X.nnz),
                  "cells_table": adata.uns["s3r_input"]["cells"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_folder(root: Path, n_cells: int, n_genes: int, seed: int = 0, parquet: bool = False) -> Path:
    from tenx_layouts import write_xenium

    rng = np.random.default_rng(seed)
    # Xenium-like sparsity: a few hundred transcripts per cell over a 300-gene panel, most genes 0 in a cell
    rates = rng.gamma(0.3, 2.0, size=n_genes)
    depth = rng.lognormal(0.0, 0.5, size=n_cells)
    blocks = []
    for start in range(0, n_cells, 20000):
        d = depth[start:start + 20000]
        blocks.append(sp.csr_matrix(rng.poisson(np.outer(d, rates)).astype(np.float64)))
    counts = sp.vstack(blocks).tocsr()
    ids = [f"{i:08x}-1" for i in range(n_cells)]
    centroids = rng.uniform(0, 8000, size=(n_cells, 2)).round(4)
    genes = [f"GENE{j:04d}" for j in range(n_genes)]
    return write_xenium(root, counts, ids, genes, centroids, n_controls=20, cells="parquet" if parquet else "csv", seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the folders here and keep them")
    args = parser.parse_args()
    try:
        import pyarrow  # noqa: F401

        tables = ["csv", "parquet"]
    except ImportError:
        tables = ["csv"]
    result = {"provenance": provenance(), "cells": args.cells, "genes": args.genes, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for table in tables:
            t0 = time.perf_counter()
            folder = make_folder(root / f"xenium_{table}", args.cells, args.genes, parquet=table == "parquet")
            write_s = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in folder.iterdir())
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=True)
                run = json.loads(out.stdout)
                run["process_wall_s"] = time.perf_counter() - start
                runs.append(run)
            result["runs"][table] = {"write_s": write_s, "folder_mib": size / 2**20, "reads": runs}
            best = min(r["read_s"] for r in runs)
            peak = max(r["peak_rss_mib"] for r in runs)
            print(f"cells.{'csv.gz' if table == 'csv' else 'parquet'}: {runs[0]['n_obs']} cells x {runs[0]['n_vars']} genes "
                  f"(nnz {runs[0]['nnz']}), folder {size / 2**20:.1f} MiB; read {best:.2f} s (best of {len(runs)}; "
                  f"process incl. imports {min(r['process_wall_s'] for r in runs):.2f} s), peak RSS {peak:.0f} MiB", flush=True)
    result["children_max_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = HERE / "out" / "xenium_read.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
