"""Generalised linear models for counts: families, a batched elastic-net path solver and scores.

Non-spatial (``GLMNet``: many responses at once, per-feature penalty factors, λ path, path CV); the spatial
S3R datafit for these families lives in :mod:`s3r.solver.glm_batch` (the problem) and :mod:`s3r.solver.glm_loss` (the data fit).
"""

from s3r.lazy import lazy_exports

# names load on first use: the families alone (a tuning job checking a setting) should not bring the estimators'
# scikit-learn and pandas (0.7 s of every fold job's start-up, session 28)
_WHERE = {
    "estimator": ("ElasticNetGLM", "GLMNet"),
    "spateo": ("GLM", "GLMCV"),
    "families": ("FAMILIES", "Gamma", "Gaussian", "NegativeBinomial", "Poisson", "get_family"),
    "metrics": ("deviance", "glm_scores"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
