"""Agreement with an established peer: s3r's GLM path against R glmnet on the real ECCITE-seq screen, gaussian and
poisson, at s3r's own λ values — s3r's objective is never worse than glmnet's by more than 1e-6 (relative).

Needs ../shared/data/real and R with glmnet; on Debian as root the test installs `r-cran-glmnet`, else it skips.
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import apt_lock

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("glmnet_peer", ROOT / "benchmarks" / "glmnet_peer.py")
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)

pytestmark = pytest.mark.skipif(not peer.REAL.is_file(), reason="real data (../shared/data/real) not present")


@pytest.fixture(scope="module")
def glmnet():
    if peer.rscript_with_glmnet() is None and shutil.which("apt-get") and os.geteuid() == 0:
        # without the recommends (r-base-dev's compilers, r-recommended, the HTML docs): glmnet's own dependencies
        # are enough, and a fresh CI machine installs a fraction of the packages
        with apt_lock():
            subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "r-cran-glmnet"],
                           capture_output=True, timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if peer.rscript_with_glmnet() is None:
        pytest.skip("R glmnet not available and not installable here (Debian package r-cran-glmnet)")


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_objective_matches_r_glmnet_on_the_real_screen(glmnet, family, one_torch_thread):
    from s3r.glm import GLMNet

    X, Y, off, pf = peer.screen_design(family=family, genes=24)
    m = GLMNet(family, l1_ratio=0.5, n_alphas=10, eps=1e-3, penalty_factor=pf, standardize=False, tol=1e-6, device="cpu").fit(X, Y, offset=off)
    b0, coef, _ = peer.run_glmnet(X, Y, off, pf, family, lambdas=m.alphas_)
    ours = peer.objective(X, Y, off, pf, family, m.alphas_, m.intercept_path_, m.coef_path_)
    theirs = peer.objective(X, Y, off, pf, family, m.alphas_, b0, coef)
    gap = (ours - theirs) / np.abs(theirs)
    assert gap.max() <= 1e-6, f"s3r worse than glmnet by {gap.max():.2e} (relative)"
    # the same problem: at the first λ (λ_max) both leave every perturbation (near) zero
    assert np.allclose(m.coef_path_[0][:, pf > 0], 0, atol=1e-6) and np.allclose(coef[0][:, pf > 0], 0, atol=1e-6)
    assert np.median(np.abs(gap)) < 1e-6  # both ways, typically: glmnet is not better either
