"""Progress lines for long GLM fits: a screen's negative-binomial path runs ten minutes, and a silent job on a
cluster cannot be told from a hung one (benchmarks/README.md, session 30)."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY = 10.0  # seconds between lines; the last point of every path is always reported


class PathProgress:
    """Reports where a :class:`~s3r.glm.estimator.GLMNet` fit stands: which response block, the full-data path or a
    CV fold, and the path point. ``say`` takes one line of text (None: silent); lines come at most every
    :data:`EVERY` seconds, plus one at the end of each path, so a long fit gives a steady trickle, a short one a few."""

    def __init__(self, say: Callable[[str], None] | None):
        self.say = say
        self.start = self.last = time.perf_counter()
        self.block = ""  # "responses 1–500 of 2,000" when a fit runs in response blocks
        self.stage = "path"  # "path" or "CV fold f/K"

    def begin(self, n_responses: int, n_features: int, family: str) -> None:
        """A line as a full-data path starts: its first point (the null model, θ for NB) can take minutes."""
        if self.say is not None and self.stage == "path":
            where = f"{self.block}: " if self.block else ""
            self.say(f"{where}fitting {n_responses} responses × {n_features} features ({family}); {time.perf_counter() - self.start:.0f} s")

    def point(self, k: int, n_points: int, lam: float, n_nonzero: float, theta=None) -> None:
        """Path point ``k`` (0-based) of ``n_points`` done; ``lam`` its λ, ``n_nonzero`` and ``theta`` (NB) medians
        over the responses."""
        if self.say is None:
            return
        now = time.perf_counter()
        if now - self.last < EVERY and k + 1 < n_points:
            return
        self.last = now
        parts = [p for p in (self.block, self.stage) if p]
        theta_note = "" if theta is None else f", median θ {float(theta):.3g}"
        self.say(f"{', '.join(parts)}: λ {k + 1}/{n_points} ({lam:.3g}), median {n_nonzero:g} non-zero"
                 f"{theta_note}; {now - self.start:.0f} s")
