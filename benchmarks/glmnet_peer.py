"""R glmnet as the peer of ``s3r.glm.GLMNet`` on the real screen: the design, one R runner, one objective.

Used by ``benchmarks/glmnet_compare.py`` (speed and agreement, all 299 genes) and ``tests/test_glm_glmnet.py``
(agreement on a subset). R is called through ``Rscript`` on binary files (no R package beyond glmnet).
glmnet rescales penalty factors to sum to the number of features, so a λ of ours is λ · sum(pf)/p in glmnet.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "papalexi_eccite.h5ad"

R_SCRIPT = r"""
suppressMessages(library(glmnet))
a <- commandArgs(TRUE); d <- a[1]; fam <- a[2]; mode <- a[3]
dims <- scan(file.path(d, "dims.txt"), quiet=TRUE); n <- dims[1]; p <- dims[2]; B <- dims[3]; K <- dims[4]
rd <- function(f, m) readBin(file.path(d, f), "double", m)
X <- matrix(rd("X.bin", n*p), n, p); Y <- matrix(rd("Y.bin", n*B), n, B); pf <- rd("pf.bin", p)
off <- if (file.exists(file.path(d, "off.bin"))) rd("off.bin", n) else NULL
t0 <- proc.time()[["elapsed"]]
if (mode == "time") {
  for (b in 1:B) f <- glmnet(X, Y[, b], family=fam, offset=off, penalty.factor=pf, alpha=0.5, nlambda=K,
                             lambda.min.ratio=1e-3, standardize=FALSE)
} else {
  lam <- matrix(rd("lam.bin", K*B), K, B); s <- p / sum(pf); out <- matrix(0, p+1, K*B)
  for (b in 1:B) {
    f <- glmnet(X, Y[, b], family=fam, offset=off, penalty.factor=pf, alpha=0.5, lambda=lam[, b] / s,
                standardize=FALSE, thresh=1e-14, maxit=1e7)
    out[, (b-1)*K + 1:K] <- as.matrix(coef(f))
  }
  writeBin(as.vector(out), file.path(d, "coef.bin"))
}
cat(proc.time()[["elapsed"]] - t0, "\n")
"""


def rscript_with_glmnet() -> str | None:
    """Path of Rscript when R and glmnet are installed, else None."""
    exe = shutil.which("Rscript")
    if exe is None:
        return None
    ok = subprocess.run([exe, "-e", "quit(status = !requireNamespace('glmnet', quietly = TRUE))"], capture_output=True)
    return exe if ok.returncode == 0 else None


def screen_design(path=REAL, family: str = "poisson", genes: int | None = None):
    """(X, Y dense, offset or None, penalty factor): the perturb-seq mode's own design on the real screen —
    perturbations one-hot against control, replicate one-hot and log library size unpenalised; counts with
    log library size as offset (poisson) or log-normalised expression (gaussian)."""
    import anndata
    import scipy.sparse as sp

    from s3r.perturb import covariate_matrix, library_sizes, log_normalise, perturbation_design, qc_covariates

    a = anndata.read_h5ad(path)
    counts = sp.csr_matrix(a.X, dtype=np.float64)
    D, _, keep = perturbation_design(a.obs["perturbation"], "control")
    counts = counts[keep]
    obs = qc_covariates(counts, list(a.var_names), a.obs.loc[keep].copy(), ["bio_rep", "log1p_total_counts"])
    C, _ = covariate_matrix(obs, ["bio_rep", "log1p_total_counts"])
    X = np.hstack([D, C])
    pf = np.r_[np.ones(D.shape[1]), np.zeros(C.shape[1])]
    cols = slice(None) if genes is None else slice(0, genes)
    if family == "gaussian":
        return X, log_normalise(counts)[:, cols].toarray(), None, pf
    return X, counts[:, cols].toarray(), np.log(library_sizes(counts)), pf


def run_glmnet(X, Y, offset, pf, family: str, *, lambdas=None, n_lambda: int = 20):
    """Time glmnet's own path (``lambdas`` None), or fit at the given (K, B) λ of ours and return
    (intercepts (K, B), coefficients (K, B, p), seconds inside R)."""
    exe = rscript_with_glmnet()
    if exe is None:
        raise RuntimeError("Rscript with the glmnet package is not installed (Debian: apt-get install r-cran-glmnet)")
    n, p = X.shape
    B = Y.shape[1]
    K = n_lambda if lambdas is None else lambdas.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        X.T.astype("<f8").tofile(d / "X.bin")  # R reads column-major
        Y.T.astype("<f8").tofile(d / "Y.bin")
        pf.astype("<f8").tofile(d / "pf.bin")
        if offset is not None:
            np.asarray(offset, dtype="<f8").tofile(d / "off.bin")
        if lambdas is not None:
            np.asarray(lambdas, dtype="<f8").T.tofile(d / "lam.bin")
        (d / "dims.txt").write_text(f"{n} {p} {B} {K}\n")
        (d / "run.R").write_text(R_SCRIPT)
        res = subprocess.run([exe, str(d / "run.R"), str(d), family, "time" if lambdas is None else "fit"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"Rscript failed: {res.stderr.strip()[-500:]}")
        seconds = float(res.stdout.split()[-1])
        if lambdas is None:
            return None, None, seconds
        out = np.fromfile(d / "coef.bin", dtype="<f8").reshape(B, K, p + 1)  # per gene, per λ: [intercept, β]
    return out[:, :, 0].T, out[:, :, 1:].transpose(1, 0, 2), seconds


def objective(X, Y, offset, pf, family, lam, intercept, coef, l1_ratio: float = 0.5):
    """(K, B) penalised objective of ours — mean half deviance + λ Σ pf (a|β| + (1 − a)/2 β²) — for any
    coefficients; both solvers are scored by this one formula."""
    import torch

    from s3r.glm.families import get_family

    fam = get_family(family)
    Yt = torch.as_tensor(Y)
    out = np.zeros(lam.shape)
    for k in range(lam.shape[0]):
        eta = X @ coef[k].T + intercept[k][None, :] + (0.0 if offset is None else offset[:, None])
        fit = fam.loss(Yt, torch.as_tensor(eta)).mean(0).numpy()
        pen = (pf * (l1_ratio * np.abs(coef[k]) + 0.5 * (1 - l1_ratio) * coef[k] ** 2)).sum(1)
        out[k] = fit + lam[k] * pen
    return out
