"""The cross-validation settings' fixed values, importable without torch (the tuning's light jobs read them)."""

FOLD_SCHEMES = ("blocks", "random")
DEFAULT_BLOCKS_PER_FOLD = 4
PREDICTORS = ("graph", "neighbours")
TREND_LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # relative to the trend's own λ scale
