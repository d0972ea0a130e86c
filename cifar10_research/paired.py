"""Whether one recipe beats another: the mean of per-seed differences with a
Student's t confidence interval, and the t quantile it needs (no scipy).

Runs of two recipes with the same seed form a pair; the differences
d_s = acc(B, s) - acc(A, s) are taken as independent draws from one normal
distribution, and the interval is mean(d) ± t_{(1+c)/2, n-1} * sd(d) / sqrt(n).
"""

import math
import statistics
from typing import NamedTuple

BETTER = "better than the baseline"
WORSE = "worse than the baseline"
SAME = "not distinguishable from the baseline"


class Difference(NamedTuple):
    """The mean of n paired differences and the half-width of its interval
    (None with one pair: no spread to estimate)."""
    mean: float
    half_width: float | None
    n: int


def difference(baseline: dict, candidate: dict, confidence: float = 0.95) -> Difference:
    """candidate minus baseline, each {seed: accuracy}, paired by seed."""
    differences = [candidate[seed] - baseline[seed] for seed in baseline]
    n = len(differences)
    if n < 2:
        return Difference(differences[0], None, n)
    quantile = t_quantile((1 + confidence) / 2, n - 1)
    return Difference(statistics.mean(differences),
                      quantile * statistics.stdev(differences) / math.sqrt(n), n)


def verdict(found: Difference) -> str:
    """What the interval says: better, worse, or not distinguishable when it holds 0."""
    if found.half_width is None:
        return "n/a: one seed, the interval cannot be computed"
    if found.mean - found.half_width > 0:
        return BETTER
    if found.mean + found.half_width < 0:
        return WORSE
    return SAME


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with `df` degrees of freedom:
    bisection on `t_cdf`, which increases with t."""
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(100):  # Halves [low, high] past double precision.
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t): 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2), for t >= 0."""
    tail = regularized_beta(df / (df + t * t), df / 2, 0.5) / 2
    return 1 - tail if t >= 0 else tail


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), by its continued fraction where that converges fast, else by
    I_x(a, b) = 1 - I_{1-x}(b, a) (Numerical Recipes, section 6.4)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1 - front * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float, tiny: float = 1e-300) -> float:
    """The continued fraction of I_x(a, b), by the modified Lentz method."""
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1) < 1e-15:
            return fraction
    raise ArithmeticError(f"the continued fraction of I_{x}({a}, {b}) did not converge")
