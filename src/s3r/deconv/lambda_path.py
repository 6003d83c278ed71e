"""The proportions mode's λ path: held-out genes over λ values from 0 upwards, on a window of the section.

λ is unit-free (the count term is divided by the median library size) and the choice is a held-out
log-likelihood per count, so it transfers from a compact window of spots to the whole section: on the
100,000-spot simulation windows of 1,000, 2,000, 5,000 and 20,000 spots all chose the same λ, and the DLPFC
section (3,592 spots) chose the same λ on a 2,000-spot window as on all of it, so ``cv_max_spots`` is 2,000
(a 20,000-spot window cost ≈ 4 minutes of a 100,000-spot fit). The path is a choice, not the answer: each
fold fit stops its V-step/w-step alternation after ``cv_max_outer`` rounds (held-out scores the same to 5
decimals with 2 rounds as with 8 on that simulation, where at large λ the weights of near-flat regions kept
flipping between equally good LP vertices for all 8), and the fit of the chosen λ on the whole section runs
the alternation to the end (benchmarks/README.md, session 9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from s3r.deconv.counts import cell_fractions, transcript_fractions
from s3r.deconv.heldout import choose_lambda, fold_profiles, gene_folds, heldout_score
from s3r.deconv.operators import Incidence
from s3r.deconv.wstep import uniform_weights
from s3r.graph.window import edge_restriction, window_spots

EXTEND = 3  # more λ tried (each ×2.5) while the largest so far scores best
# the path's fold fits run on one CPU thread: a window's tensors (2,000 spots × 200 genes) are too small to
# split, and on a busy 2-core machine two threads cost 15× the CPU and 25× the wall time of one for the same
# 2,240 iterations (waiting at each operation's barrier for a descheduled thread; session 9)
PATH_THREADS = 1


def choose_on_window(model, candidates, Y, M, gamma, sizes, scale, theta, coords, order, edges, incidence, node_edge,
                     V_start) -> tuple[float, pd.DataFrame, int]:
    """λ by held-out genes, on a window of ``model.cv_max_spots`` spots when the section is larger."""
    n, K = Y.shape[0], M.shape[0]
    saved = model._uniform
    if model.cv_max_spots is not None and n > int(model.cv_max_spots):
        window = window_spots(None if coords is None else np.asarray(coords, dtype=np.float64)[order], int(model.cv_max_spots),
                              edges=edges, n=n)
        Y, V_start = Y[window], V_start[:, torch.as_tensor(window, device=V_start.device)]
        cv_edges = edge_restriction(edges, window, n)[1]
        incidence = Incidence(len(window), cv_edges, K, model._device, model._dtype)
        node_edge = incidence.node_edge_matrix()
        model._uniform = torch.as_tensor(uniform_weights(cv_edges, len(window)), dtype=model._dtype, device=model._device)
        model._log(f"choosing λ on a window of {len(window)} spots around the tissue's centre")
    threads = torch.get_num_threads()
    if model._device.type == "cpu":
        torch.set_num_threads(min(threads, PATH_THREADS))
    try:
        cv_table = cross_validate(model, Y, M, gamma, sizes, scale, theta, incidence, node_edge, V_start, candidates)
    finally:
        model._uniform = saved
        torch.set_num_threads(threads)
    mean = cv_table.groupby("lambda")["heldout_loglik_per_count"].mean()
    lam = choose_lambda(cv_table, float(model.gain_se))
    model._log(f"chose λ = {lam:g} by held-out genes: " + ", ".join(f"{l:g}: {v:.5f}" for l, v in mean.items()))
    return lam, cv_table, int(Y.shape[0])


def _folds(model, Y, M, gamma, sizes, scale, theta, V_start) -> list[dict]:
    """Per gene fold: training and test profiles, the start in the training genes' fractions, the count term."""
    fold_of = gene_folds(Y.shape[1], int(model.n_folds), model.seed)
    folds = []
    start_P = cell_fractions(V_start.T.cpu().numpy(), sizes)
    for fold in range(int(model.n_folds)):
        state = fold_profiles(M, gamma, model.floor, fold_of == fold)
        state["start"] = torch.as_tensor(transcript_fractions(start_P, state["train_sizes"]).T.copy(),
                                         dtype=model._dtype, device=model._device)
        state["term"] = model._term(Y[:, state["train"]], state["train_profiles"], theta, scale)
        state["test_counts"], state["fit"] = Y[:, state["test"]], None
        folds.append(state)
    return folds


def cross_validate(model, Y, M, gamma, sizes, scale, theta, incidence, node_edge, V_start, candidates) -> pd.DataFrame:
    """Held-out log-likelihood per count of each fold's genes, fitted on the other genes, per λ.

    The path runs upwards from λ = 0, each fold warm-started from its fit at the previous λ. When the
    largest candidate scores best, the path goes on (×2.5, up to ``EXTEND`` more) until the score drops;
    once ``cv_patience`` λ past the best so far all score below it, the path stops (larger λ smooth more,
    cost the most iterations, and on every real set measured the score fell steadily past its peak).
    """
    folds = _folds(model, Y, M, gamma, sizes, scale, theta, V_start)
    rows, path = [], list(candidates)
    extended, position = 0, 0
    rounds = None if model.cv_max_outer is None else int(model.cv_max_outer)
    while position < len(path):
        lam = path[position]
        for fold, state in enumerate(folds):
            fit = model._solve(state["term"], incidence, node_edge, lam, state["fit"], state["start"], model.cv_tol,
                               model.cv_max_iter, max_outer=rounds)
            state["fit"] = fit
            score = heldout_score(fit.fractions.T.cpu().numpy(), state, state["test_counts"], model._family, theta)
            rows.append({
                "fold": fold, "lambda": lam, "heldout_loglik_per_count": score,
                "iterations": fit.result.iterations, "converged": fit.result.converged,
                "weight_changes": fit.weight_changes, "seconds": fit.seconds,
            })
            model._log(f"λ = {lam:g}, fold {fold + 1}/{model.n_folds}: held-out {score:.5f} "
                       f"per count ({fit.result.iterations} iterations, {fit.seconds:.1f} s)")
        position += 1
        mean = pd.DataFrame(rows).groupby("lambda")["heldout_loglik_per_count"].mean()
        if model.cv_patience is not None and (mean.index > mean.idxmax()).sum() >= int(model.cv_patience):
            model._log(f"held-out score below its best (λ = {mean.idxmax():g}) at the last {int(model.cv_patience)} λ: path stopped")
            break
        if position == len(path) and lam > 0 and extended < EXTEND and mean.idxmax() == lam:
            path.append(lam * 2.5)
            extended += 1
    return pd.DataFrame(rows)


def lambda_evidence(cv: pd.DataFrame | None, chosen: float) -> pd.DataFrame:
    """Per λ: mean and standard error over folds of the held-out score, and which one was chosen."""
    if cv is None:
        return pd.DataFrame({"lambda": [chosen], "chosen": [True]})
    grouped = cv.groupby("lambda")["heldout_loglik_per_count"]
    table = pd.DataFrame({"mean": grouped.mean(), "se": grouped.std(ddof=1) / np.sqrt(grouped.count())}).reset_index()
    table["chosen"] = table["lambda"] == chosen
    return table
