"""s3r: spatially smooth sparse regression for spatial omics."""

__version__ = "0.1.0"

from s3r.estimator import S3R  # noqa: E402

__all__ = ["S3R", "__version__"]
