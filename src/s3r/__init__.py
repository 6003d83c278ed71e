"""s3r: spatially smooth sparse regression for spatial omics."""

__version__ = "0.1.0"
__all__ = ["S3R", "__version__"]


def __getattr__(name):
    # torch is imported only when the estimator is used, so `s3r --help` and the workflow's parse stay fast
    if name == "S3R":
        from s3r.estimator import S3R

        return S3R
    raise AttributeError(f"module 's3r' has no attribute {name!r}")
