"""Cross-validation for S3R: fold schemes, out-of-fold prediction and the held-out loss.

Random folds leak through spatial autocorrelation (a held-out spot's neighbours are in training and carry
almost its own coefficients), so the default holds out contiguous spatial blocks. A held-out spot stays in the
graph with observation weight 0: its coefficients are whatever the smoothness penalty extends into it from
training spots, so its own response never enters its prediction. The neighbour average over *spatial*
training neighbours is kept for comparison with the reference implementation's predictor (which used
neighbouring index numbers instead).

Count families (poisson, negative_binomial, gamma) are scored by the mean unit deviance on held-out spots,
which for the gaussian is the squared error, so the loss means the same thing as the data fit being tuned.

The package: ``folds`` (fold schemes, which spots a fold hides and scores), ``solve`` (a fold's parameter sets in one
batched solve, several targets at once), ``losses`` (held-out prediction and loss, the intercept-only and spatial-trend
yardsticks), ``pieces`` (the size of a fitted map), ``names`` (the settings' fixed values). Every name is importable
from ``s3r.cv``; each submodule loads on first use, so reading a setting (``cv.PREDICTORS``) does not import torch.
"""

from __future__ import annotations

from s3r.lazy import lazy_exports

_WHERE = {
    "names": ("DEFAULT_BLOCKS_PER_FOLD", "FOLD_SCHEMES", "PREDICTORS", "TREND_LAMBDAS"),
    "folds": ("free_rows", "heldout_mask", "make_folds", "random_folds", "scored_spots", "spatial_block_folds", "spatial_blocks",
              "training_weights"),
    "losses": ("cross_validate", "fold_losses", "heldout_deviance", "heldout_mse", "neighbour_average", "null_loss", "predict",
               "reference_theta", "trend_losses"),
    "pieces": ("map_features", "map_pieces"),
    "solve": ("CPU_BATCH", "CVProblem", "FoldSolution", "_penalties", "solve_fold", "solve_fold_targets", "zero_is_optimal"),
}  # _penalties: private, used by the tests

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
