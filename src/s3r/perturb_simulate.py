"""Simulated perturb-seq screens with planted effects (tests, benchmarks and the workflow demo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

def simulate_perturbseq(n_cells=2000, n_genes=200, n_perturbations=10, n_programmes=4, *, effect=1.0, theta=5.0, n_batches=2, seed=0,
                        cell_cycle: float = 0.0, n_cycle_genes: int = 10):
    """Counts with planted effects: each perturbation shifts one programme's genes by ±``effect`` (log scale).

    Programmes occupy the first half of the genes; the second half is unaffected and highly expressed, so the
    library size (the count families' offset) is not itself moved by the perturbations, as in a real transcriptome.

    ``cell_cycle`` > 0 adds a cell cycle: each cell's S and G2M activities (uniform in [0, 1], from their own
    random stream, so the rest of the draw is unchanged) raise ``n_cycle_genes`` S genes and as many G2M genes
    of the unaffected half by up to ``cell_cycle`` on the log scale; ``obs`` then holds the true activities
    (``true_S``, ``true_G2M``).

    Returns (counts (n, g), obs DataFrame with ``perturbation``, ``batch``, ``pct_mito``, ``log_total``),
    true log fold changes (k, g) and the planted programme of each gene (0 = none).
    """
    rng = np.random.default_rng(seed)
    labels = np.array(["control"] + [f"P{j + 1}" for j in range(n_perturbations)])
    pert = rng.integers(0, n_perturbations + 1, n_cells)
    prog_of_gene = np.zeros(n_genes, dtype=np.int64)
    per = max(1, n_genes // (2 * n_programmes))
    for q in range(n_programmes):
        prog_of_gene[q * per : (q + 1) * per] = q + 1
    effects = np.zeros((n_perturbations, n_genes))
    for j in range(n_perturbations):
        q = j % n_programmes + 1
        effects[j, prog_of_gene == q] = effect * (1 if (j // n_programmes) % 2 == 0 else -1)
    batch = rng.integers(0, n_batches, n_cells)
    batch_eff = rng.normal(0, 0.3, (n_batches, n_genes))
    base = rng.normal(np.log(2.0), 0.5, n_genes)
    base[n_genes // 2 :] += np.log(20.0)  # unaffected, well-expressed genes carry the library size
    size = rng.lognormal(np.log(3000), 0.3, n_cells) / 3000
    log_mu = base[None] + batch_eff[batch] + np.log(size)[:, None]
    has = pert > 0
    log_mu[has] += effects[pert[has] - 1]
    if cell_cycle > 0:
        s_idx, g_idx = cycle_genes(n_genes, n_cycle_genes)
        crng = np.random.default_rng([seed, 2])
        act = crng.uniform(0, 1, (n_cells, 2))
        log_mu[:, s_idx] += cell_cycle * act[:, :1]
        log_mu[:, g_idx] += cell_cycle * act[:, 1:]
    mu = np.exp(log_mu)
    counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    obs = pd.DataFrame({
        "perturbation": labels[pert],
        "batch": pd.Categorical([f"b{b}" for b in batch]),
        "pct_mito": rng.uniform(1, 8, n_cells),
        "log_total": np.log(counts.sum(1) + 1),
    }, index=[f"cell_{i + 1}" for i in range(n_cells)])
    if cell_cycle > 0:
        obs["true_S"], obs["true_G2M"] = act[:, 0], act[:, 1]
    return counts, obs, effects, prog_of_gene


def cycle_genes(n_genes: int, n_cycle_genes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the simulator's S and G2M genes: the first 2·n_cycle_genes of the unaffected half."""
    start = n_genes // 2
    k = max(1, min(n_cycle_genes, (n_genes - start) // 2))
    return np.arange(start, start + k), np.arange(start + k, start + 2 * k)



def simulate_perturbseq_h5ad(path, *, n_cells=600, n_genes=200, n_perturbations=6, n_programmes=3, effect=1.0, theta=5.0,
                             n_batches=2, seed=0, cell_cycle: float = 0.8, n_cycle_genes: int = 10, gmt=None) -> None:
    """A perturb-seq AnnData file with planted effects (the workflow demo): raw counts in .X; .obs holds
    ``perturbation``, ``batch``, ``pct_counts_mt``, ``total_counts`` and the true cell-cycle activities; the
    S/G2M gene lists in ``.uns['s_genes']``/``.uns['g2m_genes']``; the truth in ``.varm['true_effects']`` (genes ×
    perturbations) and ``.var['true_programme']``. ``gmt``: also write a GMT file whose sets are the planted
    programmes (``PLANTED_<q>``), the cell-cycle lists and decoys of genes nothing moves — the offline enrichment demo."""
    import anndata

    from s3r.io import atomic_path, atomic_write

    counts, obs, effects, prog = simulate_perturbseq(n_cells, n_genes, n_perturbations, n_programmes, effect=effect, theta=theta,
                                                     n_batches=n_batches, seed=seed, cell_cycle=cell_cycle, n_cycle_genes=n_cycle_genes)
    obs = pd.DataFrame({
        "perturbation": pd.Categorical(obs["perturbation"]),
        "batch": obs["batch"],
        "pct_counts_mt": obs["pct_mito"].to_numpy(),
        "total_counts": counts.sum(1),
        **({"true_S": obs["true_S"].to_numpy(), "true_G2M": obs["true_G2M"].to_numpy()} if cell_cycle > 0 else {}),
    }, index=obs.index)
    genes = [f"gene_{j + 1}" for j in range(n_genes)]
    s_idx, g_idx = cycle_genes(n_genes, n_cycle_genes)
    adata = anndata.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame({"true_programme": prog}, index=genes),
        varm={"true_effects": effects.T},
        uns={"perturbations": [f"P{j + 1}" for j in range(n_perturbations)], "s_genes": [genes[j] for j in s_idx],
             "g2m_genes": [genes[j] for j in g_idx]},
    )
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    if gmt is not None:
        rng = np.random.default_rng([seed, 3])
        lines = [f"PLANTED_{q}\tplanted programme {q}\t" + "\t".join(genes[j] for j in np.flatnonzero(prog == q)) for q in range(1, n_programmes + 1)]
        lines += [f"CELL_CYCLE_S\tsimulated S phase\t" + "\t".join(genes[j] for j in s_idx),
                  f"CELL_CYCLE_G2M\tsimulated G2M phase\t" + "\t".join(genes[j] for j in g_idx)]
        quiet = np.setdiff1d(np.flatnonzero(prog == 0), np.r_[s_idx, g_idx])  # genes nothing moves: negative controls
        for d in range(1, 6):
            pick = np.sort(rng.choice(quiet, size=min(len(quiet), max(3, n_genes // 12)), replace=False))
            lines.append(f"DECOY_{d}\tgenes no perturbation moves\t" + "\t".join(genes[j] for j in pick))
        with atomic_write(gmt, "w") as fh:
            fh.write("\n".join(lines) + "\n")
