"""Generalised linear models for counts: families, a batched elastic-net path solver and scores.

Non-spatial (``GLMNet``: many responses at once, per-feature penalty factors, λ path, path CV); the spatial
S3R datafit for these families lives in :mod:`s3r.solver.smooth_datafit_pd`.
"""

from s3r.glm.estimator import ElasticNetGLM, GLMNet
from s3r.glm.spateo import GLM, GLMCV
from s3r.glm.families import FAMILIES, Gamma, Gaussian, NegativeBinomial, Poisson, get_family
from s3r.glm.metrics import deviance, glm_scores

__all__ = ["FAMILIES", "GLM", "GLMCV", "ElasticNetGLM", "GLMNet", "Gamma", "Gaussian", "NegativeBinomial", "Poisson", "deviance", "get_family", "glm_scores"]
