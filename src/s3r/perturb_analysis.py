"""Downstream of a perturb-seq fit (seed 002): per-cell gene-set scores, programme shifts per perturbation with
significance, and enrichment of programmes in user gene sets.

Scores follow Seurat/scanpy's ``score_genes`` (mean expression of the set minus that of a random control set
drawn from the same expression bins), reproduced here rather than imported so the workflow does not carry
scanpy and its compiled dependencies; with the same ``random_state`` the control genes, and so the scores,
are the ones scanpy draws. Everything takes sparse log-normalised expression without densifying it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError


def _label(prefix: str, value) -> str:
    return value if isinstance(value, str) and value.startswith(prefix) else f"{prefix}{int(value)}"


def _number(prefix: str, label) -> int:
    text = str(label)
    return int(text[len(prefix):]) if text.startswith(prefix) else int(text)


def programme_label(p) -> str:
    """The one spelling of a programme everywhere (tables, figures, summary): ``P<n>``, P0 = genes nothing moves."""
    return _label("P", p)


def programme_number(label) -> int:
    """``P3`` (or 3) → 3: the inverse of :func:`programme_label`, for sorting and reading tables back."""
    return _number("P", label)


def module_label(m) -> str:
    """The one spelling of a perturbation module everywhere (modules.tsv, figures, summary): ``M<n>``, M0 = moves nothing."""
    return _label("M", m)


def module_number(label) -> int:
    """``M2`` (or 2) → 2: the inverse of :func:`module_label`."""
    return _number("M", label)


__all__ = ["programme_label", "programme_number", "module_label", "module_number", "score_genes", "cell_cycle_scores", "programme_cell_scores", "programme_tests", "read_gmt", "read_gene_list",
           "enrichment"]


def _col_means(X, axis: int) -> np.ndarray:
    return np.asarray(X.mean(axis=axis), dtype=np.float64).ravel()


def score_genes(X, var_names, gene_list, *, ctrl_size: int = 50, n_bins: int = 25, gene_pool=None, random_state: int = 0,
                exclude=None) -> np.ndarray:
    """Per-cell score of ``gene_list``: scanpy's ``tl.score_genes`` (``ctrl_as_ref=True``, its default).

    Genes are binned by mean expression over cells; from each bin that holds a listed gene, ``ctrl_size``
    genes are drawn at random (RandomState(``random_state``), in bin order, as scanpy draws them) and the listed
    genes removed; the score is the mean of the listed genes minus the mean of the drawn ones. Subtracting a
    matched control set cancels what moves every gene of that expression level (library depth, quality).
    ``exclude``: genes never drawn as controls (other programmes' genes), unless a bin holds nothing else;
    None is scanpy's method exactly.
    """
    names = pd.Index([str(v) for v in var_names])
    if X.shape[1] != len(names):
        raise S3RInputError(f"expression has {X.shape[1]} genes but {len(names)} gene names were given")
    genes = pd.Index([str(g) for g in gene_list])
    genes = genes.intersection(names)
    if len(genes) == 0:
        raise S3RInputError(f"none of the genes to score ({', '.join(map(str, list(gene_list)[:5]))}) is among the expression's genes; check the gene names")
    pool = names if gene_pool is None else pd.Index([str(g) for g in gene_pool]).intersection(names)
    if len(pool) == 0:
        raise S3RInputError("no gene of the control pool is among the expression's genes")
    rng = np.random.RandomState(random_state)
    avg = pd.Series(_col_means(X[:, names.get_indexer(pool)] if len(pool) < len(names) else X, 0), index=pool)
    avg = avg[np.isfinite(avg)]
    n_items = int(np.round(len(avg) / (n_bins - 1)))
    cut = avg.rank(method="min") // max(n_items, 1)
    control = pd.Index([], dtype=object)
    for level in np.unique(cut.loc[genes]):
        r = cut[cut == level].index
        if exclude is not None:
            kept = r[~r.isin(list(exclude))]
            if len(kept.difference(genes)):
                r = kept
        if ctrl_size < len(r):
            r = r[rng.choice(len(r), size=ctrl_size, replace=False)]
        control = control.union(r.difference(genes))
    if len(control) == 0:
        raise S3RInputError("no control genes found for the gene set; give a larger gene pool or more genes")
    return _col_means(X[:, names.get_indexer(genes)], 1) - _col_means(X[:, names.get_indexer(control)], 1)


def cell_cycle_scores(X, var_names, s_genes, g2m_genes, *, random_state: int = 0) -> pd.DataFrame:
    """S_score, G2M_score and phase per cell (scanpy's ``score_genes_cell_cycle``: control sets of the size of
    the smaller list; phase G1 when both scores are negative, else the larger one)."""
    names = set(map(str, var_names))
    for what, lst in (("S", s_genes), ("G2M", g2m_genes)):
        if not any(str(g) in names for g in lst):
            raise S3RInputError(f"none of the {what}-phase genes ({', '.join(map(str, list(lst)[:4]))}, ...) is in the data; give cell-cycle gene lists in the data's gene naming")
    size = min(len(s_genes), len(g2m_genes))
    out = pd.DataFrame({
        "S_score": score_genes(X, var_names, s_genes, ctrl_size=size, random_state=random_state),
        "G2M_score": score_genes(X, var_names, g2m_genes, ctrl_size=size, random_state=random_state),
    })
    phase = np.where(out["G2M_score"] > out["S_score"], "G2M", "S")
    phase[(out["S_score"] < 0) & (out["G2M_score"] < 0)] = "G1"
    out["phase"] = phase
    return out


def programme_cell_scores(X, var_names, programmes: pd.Series, *, ctrl_size: int = 50, random_state: int = 0,
                          pool: str = "unmoved") -> pd.DataFrame:
    """cells × programmes: :func:`score_genes` of each programme's genes (programme 0, genes no perturbation
    moves, is left out); columns ``P1``, ``P2``, ...

    ``pool="unmoved"`` leaves other programmes' genes out of the control pool (scanpy's ``gene_pool``; should
    no unmoved gene share a bin with the programme, bins are formed over all genes and other programmes' genes
    skipped where the bin has others): with scanpy's plain method (``"all"``, what seed 002 ran) a perturbation
    that raises programme A also raises the control sets of programmes B, C, ... drawn from A's expression
    bins, and shows as a spurious decrease of B and C.
    """
    if pool not in ("unmoved", "all"):
        raise S3RInputError(f"pool must be 'unmoved' or 'all', not {pool!r}")
    labels = pd.Series(programmes)
    labels.index = labels.index.astype(str)
    lab = labels.map(programme_number)
    names = [str(v) for v in var_names]
    cols = {}
    for p in sorted(int(v) for v in lab.unique() if int(v) != 0):
        genes = list(labels.index[lab == p])
        if pool == "all":
            cols[f"P{p}"] = score_genes(X, names, genes, ctrl_size=ctrl_size, random_state=random_state)
            continue
        others = set(labels.index[(lab != 0) & (lab != p)])
        try:  # scanpy's gene_pool: bins and controls from unmoved genes and the programme's own
            cols[f"P{p}"] = score_genes(X, names, genes, ctrl_size=ctrl_size, random_state=random_state,
                                        gene_pool=[g for g in names if g not in others])
        except S3RInputError:  # no unmoved gene shares an expression bin with the programme: bins over all genes
            cols[f"P{p}"] = score_genes(X, names, genes, ctrl_size=ctrl_size, random_state=random_state, exclude=others)
    return pd.DataFrame(cols)


def programme_tests(scores: pd.DataFrame, labels, control: str = "control") -> pd.DataFrame:
    """Per (perturbation, programme): mean score minus the control cells' mean, Welch's t-test against the
    control cells, BH-adjusted over all pairs (scipy's ``false_discovery_control``). Cells with labels outside
    perturbations ∪ control (NaN label) are ignored. Long table, sorted by perturbation then programme."""
    from scipy.stats import false_discovery_control, ttest_ind

    lab = pd.Series(labels, index=scores.index).astype(object)
    ctrl = lab == control
    if int(ctrl.sum()) < 2:
        raise S3RInputError(f"fewer than two cells are labelled {control!r}; the programme tests need control cells")
    rows = []
    perts = sorted(str(v) for v in lab.dropna().unique() if str(v) != control)
    for p in perts:
        cells = (lab == p).to_numpy()
        for prog in scores.columns:
            a, b = scores.loc[cells, prog].to_numpy(), scores.loc[ctrl.to_numpy(), prog].to_numpy()
            t, pv = ttest_ind(a, b, equal_var=False) if len(a) >= 2 else (np.nan, np.nan)
            rows.append({"perturbation": p, "programme": prog, "n_cells": int(cells.sum()), "n_control": int(ctrl.sum()),
                         "mean_difference": float(a.mean() - b.mean()) if len(a) else np.nan, "t": float(t), "p_value": float(pv)})
    table = pd.DataFrame(rows)
    ok = np.isfinite(table["p_value"].to_numpy())
    adj = np.full(len(table), np.nan)
    if ok.any():
        adj[ok] = false_discovery_control(table.loc[ok, "p_value"].to_numpy(), method="bh")
    table["p_adj"] = adj
    return table


def read_gene_list(spec) -> list[str]:
    """Genes from a comma-separated string or a file with one gene per line (``#`` comments allowed)."""
    if isinstance(spec, (list, tuple)):
        return [str(g).strip() for g in spec if str(g).strip()]
    text = str(spec)
    if Path(text).is_file():
        return [g.strip() for g in Path(text).read_text().splitlines() if g.strip() and not g.lstrip().startswith("#")]
    if "," not in text and ("/" in text or text.endswith((".txt", ".tsv", ".csv"))):
        raise S3RInputError(f"gene list file {text!r} not found; give a file with one gene per line or a comma-separated list")
    return [g.strip() for g in text.split(",") if g.strip()]


def read_gmt(path) -> dict[str, list[str]]:
    """Gene sets from a GMT file (name<TAB>description<TAB>gene<TAB>gene...), as MSigDB and GO exports ship."""
    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: GMT file not found; give a gene-set file (name, description, genes; tab-separated)")
    sets: dict[str, list[str]] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise S3RInputError(f"{path} line {i}: a GMT line needs name<TAB>description<TAB>genes...; found {len(parts)} field(s) (spaces instead of tabs?)")
        name = parts[0].strip()
        if name in sets:
            raise S3RInputError(f"{path} line {i}: gene set {name!r} appears twice; give each set a unique name")
        sets[name] = list(dict.fromkeys(g.strip() for g in parts[2:] if g.strip()))
    if not sets:
        raise S3RInputError(f"{path}: no gene sets found; check the file")
    return sets


def enrichment(programmes: pd.Series, gene_sets: dict, *, universe=None, min_size: int = 2) -> pd.DataFrame:
    """Hypergeometric over-representation of each gene set in each programme (programme 0 left out).

    Universe: the genes that were tested (``programmes.index`` by default), so a set counts only the genes
    the screen could have put in a programme. Sets with fewer than ``min_size`` universe genes are skipped.
    p-values are BH-adjusted within each programme (as seed 002 does per programme; scipy's ``false_discovery_control``).
    """
    from scipy.stats import false_discovery_control, hypergeom

    labels = pd.Series(programmes).map(programme_number)
    U = pd.Index(labels.index if universe is None else universe).astype(str)
    Uset = set(U)
    rows = []
    for p in sorted(int(v) for v in labels.unique() if int(v) != 0):
        members = {str(g) for g in labels.index[labels == p]} & Uset
        block = []
        for name, genes in gene_sets.items():
            inset = Uset.intersection(genes)
            if len(inset) < min_size:
                continue
            hits = sorted(members & inset)
            pv = float(hypergeom.sf(len(hits) - 1, len(U), len(inset), len(members)))
            block.append({"programme": f"P{p}", "gene_set": name, "programme_size": len(members), "set_size": len(inset),
                          "overlap": len(hits), "fold_enrichment": (len(hits) / len(members)) / (len(inset) / len(U)) if members else np.nan,
                          "p_value": pv, "genes": ",".join(hits)})
        if block:
            adj = false_discovery_control([r["p_value"] for r in block], method="bh")
            for r, a in zip(block, adj):
                r["p_adj"] = float(a)
            rows.extend(sorted(block, key=lambda r: (r["p_value"], r["gene_set"])))
    cols = ["programme", "gene_set", "programme_size", "set_size", "overlap", "fold_enrichment", "p_value", "p_adj", "genes"]
    return pd.DataFrame(rows, columns=cols)
