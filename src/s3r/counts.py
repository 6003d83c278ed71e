"""One counts policy for the command line and the workflow.

Raw counts (non-negative integers everywhere) are not what a squared-error fit assumes, and a count family
needs them raw. So, when counts are detected and the policy is ``auto``:

* gaussian: features and gene targets are library-size normalised (to ``target_sum`` per spot) and log1p'd;
* poisson / negative_binomial / gamma: features as above, the target stays raw counts, and log library size
  enters as the offset (unless an offset is named explicitly);
* features are then scaled to unit variance (not centred), as the workflow's preprocess step does.

``off`` keeps the counts as stored (no normalisation, no offset); features are still scaled to unit variance, as
the workflow's ``preprocess.normalize: false`` does, so both fit the same coefficients. Inputs that are not counts are never
transformed. Both ``s3r fit/tune`` and the workflow call :func:`prepare_kwargs`, and write
:func:`describe` into fit.json as "normalisation", so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from s3r.errors import S3RInputError

POLICIES = ("auto", "off")
COUNT_FAMILIES = ("poisson", "negative_binomial", "gamma")


def normalize_setting(policy) -> Any:
    """The preprocess 'normalize' value for a policy: 'auto' (also True, as the config allows) or False."""
    if policy in ("auto", True):
        return "auto" if policy == "auto" else True
    if policy in ("off", False, None):
        return False
    raise S3RInputError(f"normalisation must be 'auto' or 'off', not {policy!r}")


def prepare_kwargs(family: str | None, policy="auto", offset: str | None = None) -> dict[str, Any]:
    """Keyword arguments of s3r.preprocess.prepare_* that implement the policy for one model family."""
    count_family = (family or "gaussian") in COUNT_FAMILIES
    normalize = normalize_setting(policy)
    if offset is None and count_family and normalize is not False:
        offset = "auto"  # log library size when counts are detected (resolved in prepare_*)
    return {"normalize": normalize, "raw_targets": count_family, "offset": offset}


def describe(info: dict) -> dict[str, Any]:
    """What was done to the values, from a PreparedSample's info: the "normalisation" entry of fit.json."""
    normalised = bool(info.get("normalized"))
    step = f"library-size normalised to {info.get('target_sum'):g} per spot, then log1p" if normalised else "as stored"
    offset = info.get("offset")
    return {
        "counts_detected": bool(info.get("input_counts")),
        # under 'auto' detected counts are always normalised, so counts left as stored mean the policy was off
        "policy": info.get("policy") or ("off" if info.get("input_counts") and not normalised else "auto"),
        "features": (step if normalised and not str(info.get("feature_source", "")).startswith(".obsm") else "as stored")
        + (", scaled to unit variance (not centred)" if info.get("standardized") else ""),
        "target": "raw counts (count family)" if normalised and info.get("raw_targets") else step,
        "offset": {"log_library_size": "log library size (log of each spot's total counts)"}.get(offset, offset),
        "target_sum": info.get("target_sum"),
    }
