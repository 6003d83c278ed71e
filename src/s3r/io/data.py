"""One regression problem in memory, as every reader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RegressionData:
    """One regression problem, spots in a fixed order shared by every array."""

    X: np.ndarray
    y: np.ndarray
    coords: np.ndarray
    spot_ids: list[str]
    feature_names: list[str]
    target_name: str
    covariates: np.ndarray | None = None
    covariate_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Inconsistent shapes here are a programming error, not a user one.
        self.X = np.asarray(self.X, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        self.coords = np.asarray(self.coords, dtype=np.float64)
        self.spot_ids = [str(s) for s in self.spot_ids]
        self.feature_names = [str(f) for f in self.feature_names]
        n = self.X.shape[0]
        if self.X.ndim != 2 or self.y.shape != (n,) or self.coords.shape != (n, 2) or len(self.spot_ids) != n:
            raise ValueError(
                f"inconsistent shapes: X {self.X.shape}, y {self.y.shape}, coords {self.coords.shape}, "
                f"{len(self.spot_ids)} spot ids"
            )
        if len(self.feature_names) != self.X.shape[1]:
            raise ValueError(f"{len(self.feature_names)} feature names for {self.X.shape[1]} columns of X")
        if self.covariates is not None:
            self.covariates = np.asarray(self.covariates, dtype=np.float64)
            if self.covariates.ndim == 1:
                self.covariates = self.covariates[:, None]
            if self.covariates.shape[0] != n or self.covariates.shape[1] != len(self.covariate_names):
                raise ValueError(
                    f"covariates {self.covariates.shape} do not match {n} spots and "
                    f"{len(self.covariate_names)} covariate names"
                )

    @property
    def n_spots(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def spots(self, index) -> "RegressionData":
        """The same problem on the spots ``index`` (in that order): a window of a large section for tuning."""
        index = np.asarray(index, dtype=np.int64)
        return RegressionData(self.X[index], self.y[index], self.coords[index], [self.spot_ids[i] for i in index],
                              self.feature_names, self.target_name,
                              None if self.covariates is None else self.covariates[index], self.covariate_names)
