"""Held-out genes for choosing λ: gene folds, each fold's training and test profiles, and the held-out
log-likelihood of a fold's genes given proportions fitted on the others."""

from __future__ import annotations

import numpy as np

from s3r.deconv.counts import cell_fractions, profiles_from_reference, transcript_fractions


def gene_folds(n_genes: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold label per gene: a seeded permutation dealt round-robin, so folds differ in size by at most one."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n_genes, dtype=np.int64)
    fold_of[rng.permutation(n_genes)] = np.arange(n_genes) % int(n_folds)
    return fold_of


def fold_profiles(M: np.ndarray, gamma: np.ndarray, floor: float, test: np.ndarray) -> dict:
    """Profiles and cell sizes over a fold's training genes and over its test genes."""
    train = ~test
    train_profiles, train_sizes = profiles_from_reference(M[:, train], gamma[train], floor)
    test_profiles, test_sizes = profiles_from_reference(M[:, test], gamma[test], floor)
    return {"train": train, "test": test, "train_profiles": train_profiles, "train_sizes": train_sizes,
            "test_profiles": test_profiles, "test_sizes": test_sizes}


def heldout_score(V: np.ndarray, fold: dict, test_counts: np.ndarray, family: str, theta) -> float:
    """Held-out log-likelihood per count of a fold's genes from transcript fractions V (spots × types) fitted
    on its training genes: V → cell fractions (training sizes) → the test genes' composition."""
    V = np.clip(V, 0, None)
    P = cell_fractions(V / V.sum(axis=1, keepdims=True), fold["train_sizes"])
    pi = transcript_fractions(P, fold["test_sizes"]) @ fold["test_profiles"]
    has = test_counts.sum(axis=1) > 0
    return heldout_loglik(test_counts[has], pi[has], family, theta) / float(test_counts.sum())


def heldout_loglik(counts: np.ndarray, composition: np.ndarray, family: str, theta) -> float:
    """Log-likelihood of held-out genes given their spot totals, up to terms free of the fit."""
    composition = composition / composition.sum(axis=1, keepdims=True)
    if family == "poisson":
        return float((counts * np.log(composition)).sum())
    mu = composition * counts.sum(axis=1, keepdims=True)
    return float((counts * np.log(mu) - (counts + theta) * np.log(mu + theta)).sum())


def choose_lambda(table, gain_se: float = 1.0) -> float:
    """λ from the held-out table (fold, lambda, heldout_loglik_per_count): the best mean score, kept only when
    its gain over λ = 0, paired by fold, exceeds ``gain_se`` standard errors of the per-fold gains; otherwise
    λ = 0 (the spatial term is used only when the held-out genes show it helps beyond fold noise)."""
    scores = table.pivot(index="fold", columns="lambda", values="heldout_loglik_per_count")
    best = float(scores.mean().idxmax())
    if best == 0.0 or 0.0 not in scores.columns or gain_se <= 0:
        return best
    gains = (scores[best] - scores[0.0]).to_numpy()
    se = float(np.std(gains, ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else 0.0
    return best if float(gains.mean()) > gain_se * se else 0.0
