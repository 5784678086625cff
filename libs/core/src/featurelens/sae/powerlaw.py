"""Power laws y = a · x^(−b), fitted by least squares in log-log space."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law"]


@dataclass(frozen=True)
class PowerLawFit:
    """y ≈ a · x^(−b), fitted to n_points points with x in [x_min, x_max]."""

    a: float
    """Scale: the fitted y at x = 1."""

    b: float
    """Exponent: y falls by a factor 2^b each time x doubles (negative when y grows with x)."""

    r2: float
    """Coefficient of determination of the straight-line fit of log y on log x (1 = exact)."""

    n_points: int
    """Points fitted."""

    x_min: float
    """Smallest x fitted."""

    x_max: float
    """Largest x fitted."""

    def predict(self, x: float | np.ndarray) -> float | np.ndarray:
        """a · x^(−b)."""
        return self.a * np.power(x, -self.b)

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict."""
        return {
            "a": self.a,
            "b": self.b,
            "r2": self.r2,
            "n_points": self.n_points,
            "x_min": self.x_min,
            "x_max": self.x_max,
        }


def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> PowerLawFit:
    """Fit y = a · x^(−b): ordinary least squares of log y on log x.

    Needs at least two points, all x and y finite and > 0, and at least two distinct x;
    raises ValueError otherwise. R² is that of the log-log line.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}.")
    if xs.size < 2:
        raise ValueError(f"A power-law fit needs at least 2 points, got {xs.size}.")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all() and (xs > 0).all() and (ys > 0).all()):
        raise ValueError("A power-law fit needs finite, positive x and y.")
    if np.unique(xs).size < 2:
        raise ValueError("A power-law fit needs at least 2 distinct x values.")
    log_x, log_y = np.log(xs), np.log(ys)
    slope, intercept = np.polyfit(log_x, log_y, 1)
    residual = log_y - (slope * log_x + intercept)
    ss_res = float(residual @ residual)
    ss_tot = float(((log_y - log_y.mean()) ** 2).sum())
    # Constant log y is fitted exactly by a flat line.
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(
        a=math.exp(float(intercept)),
        b=-float(slope),
        r2=r2,
        n_points=int(xs.size),
        x_min=float(xs.min()),
        x_max=float(xs.max()),
    )
