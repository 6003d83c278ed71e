"""Which genes become features: the listed ones, or every gene but the targets and the imaging panels' control probes,
cut to the most variable.

Imaging panels carry probes and codewords that measure background, not a gene (Xenium: NegControlProbe_,
NegControlCodeword_, UnassignedCodeword_, DeprecatedCodeword_, Intergenic_Region_, antisense_, BLANK_; CosMx: NegPrb,
SystemControl, FalseCode; MERSCOPE and MERFISH: Blank-, Blank_). On the MERFISH hypothalamus, ``features: all`` put the
panel's five Blank_ probes among the 161 candidate regulators, and every fit selected some of them in 5 of 5 folds
(session 34). 10x files mark their own controls in ``var['feature_types']``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from s3r.errors import S3RInputError

CONTROL_PROBE = re.compile(r"^(blank[-_]|negcontrol|negprb|systemcontrol|falsecode|unassignedcodeword|deprecatedcodeword|"
                           r"intergenic_region|antisense_)", re.IGNORECASE)
GENE_EXPRESSION = "Gene Expression"  # 10x's feature_types value of a gene (the others: antibodies, controls, …)


def control_probes(names: Sequence[str], feature_types: Sequence[str] | None = None) -> list[str]:
    """The names among ``names`` that are control probes, not genes: named as the platforms name them
    (``CONTROL_PROBE``), or typed otherwise than 'Gene Expression' where 10x's ``feature_types`` are given."""
    types = [None] * len(names) if feature_types is None else [str(t) for t in feature_types]
    return [str(n) for n, t in zip(names, types) if CONTROL_PROBE.match(str(n)) or (t is not None and t != GENE_EXPRESSION)]


def left_out_controls(names: Sequence[str], features, targets: Sequence[str], source: str, log,
                      feature_types: Sequence[str] | None = None) -> list[str]:
    """The control probes that ``features: all`` leaves out of ``names`` (none for a list of features or an .obsm
    matrix, which are used as given), said in one line on ``log``."""
    if not (isinstance(features, str) and features == "all"):
        return []
    targets = set(targets)
    controls = [n for n in control_probes(names, feature_types) if n not in targets]
    if controls and log is not None:
        shown = ", ".join(controls[:5]) + (", …" if len(controls) > 5 else "")
        print(f"{source}: features 'all' leaves out {len(controls)} control probe{'s' * (len(controls) != 1)} ({shown}); "
              "list them under features to use them", file=log)
    return controls


def select_columns(X, names, features, targets, max_features, source, controls: Sequence[str] = ()):
    """Columns of X for ``features``: a list (in the given order) or 'all' but ``controls`` (top-variance when capped)."""
    if isinstance(features, str) and features == "all":  # X is already on the scale the features are used on
        chosen = feature_genes("all", X, list(names), list(targets), source, max_features=max_features, totals=None,
                               target_sum=0.0, controls=controls)
        position = {n: i for i, n in enumerate(names)}
        return X[:, [position[n] for n in chosen]], chosen
    features = [str(f) for f in features]
    position = {n: i for i, n in enumerate(names)}
    missing = [f for f in features if f not in position]
    if missing:
        raise S3RInputError(f"{source}: feature {missing[0]!r} is not in the input; check the feature names")
    clash = [f for f in features if f in targets]
    if clash:
        raise S3RInputError(f"{source}: target {clash[0]!r} is also listed as a feature; remove it from the features")
    return X[:, [position[f] for f in features]], features


def feature_genes(features, matrix, var_names, targets: list[str], source: str, *, max_features: int | None,
                  totals: np.ndarray | None, target_sum: float, controls: Sequence[str] = ()) -> list[str]:
    """The feature genes: the listed ones, or with 'all' every gene but the targets and ``controls``
    (:func:`left_out_controls`), cut to the ``max_features`` most variable (on the log-normalised scale when ``totals``
    are given, as the features will be used)."""
    if not (isinstance(features, str) and features == "all"):
        return [str(f) for f in features]
    if matrix is None:
        raise S3RInputError(f"{source}: the file has no expression matrix in .X; write one or pick a layer")
    skip = set(targets) | set(controls)
    candidates = [i for i, n in enumerate(var_names) if n not in skip]
    if not candidates:
        raise S3RInputError(f"{source}: no genes left as features once the targets are removed; list features")
    names = [var_names[i] for i in candidates]
    sub = matrix[:, candidates]
    if max_features is not None and len(names) > max_features:
        if totals is not None:
            variance = sparse_log_normalized_variance(sub, totals, target_sum)
        else:
            dense = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
            variance = np.asarray(dense, dtype=np.float64).var(axis=0)
        names = top_variable(names, variance, max_features)
    return names


def sparse_log_normalized_variance(matrix, totals: np.ndarray, target_sum: float) -> np.ndarray:
    """Per-column variance of log-normalised values without densifying an atlas-sized matrix."""
    factor = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    if sp.issparse(matrix):
        scaled = sp.csr_matrix(sp.diags(factor) @ sp.csr_matrix(matrix, dtype=np.float64))
        scaled.data = np.log1p(scaled.data)
        mean = np.asarray(scaled.mean(axis=0)).ravel()
        mean_sq = np.asarray(scaled.multiply(scaled).mean(axis=0)).ravel()
        return np.maximum(mean_sq - mean**2, 0.0)
    return np.log1p(np.asarray(matrix, dtype=np.float64) * factor[:, None]).var(axis=0)


def top_variable(names: Sequence[str], variance: np.ndarray, max_features: int) -> list[str]:
    """Most variable first-come names; constant ones are never kept (they cannot be standardised)."""
    order = np.argsort(-variance, kind="stable")
    keep = [i for i in order if variance[i] > 0][:max_features]
    return [names[i] for i in sorted(keep)]
