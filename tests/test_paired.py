import math
import random
import statistics

import pytest

from cifar10_research import paired


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776),
                                       (10, 2.228), (30, 2.042), (10**6, 1.960)])
def test_the_t_quantile_matches_the_t_table(df, table):
    assert round(paired.t_quantile(0.975, df), 3) == table


def test_the_t_quantile_matches_closed_forms_and_the_normal_limit():
    # df=1 is the Cauchy distribution: tan(pi (p - 1/2)); df=2: (2p-1) / sqrt(2p(1-p)).
    assert paired.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)
    assert paired.t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025),
                                                        rel=1e-9)
    assert paired.t_quantile(0.975, 10**6) == pytest.approx(
        statistics.NormalDist().inv_cdf(0.975), abs=1e-5)
    assert paired.t_quantile(0.025, 4) == -paired.t_quantile(0.975, 4)
    assert paired.t_cdf(-1, 1) == pytest.approx(0.25) and paired.t_cdf(1, 1) == pytest.approx(0.75)


def test_a_fraction_that_does_not_converge_raises_rather_than_guesses():
    with pytest.raises(ArithmeticError, match="did not converge"):
        paired.regularized_beta(0.5, 1e12, 1e12)


def test_three_pairs_against_a_hand_computation():
    # d = 0.05, 0.04, 0.06: mean 0.05; sd = sqrt((0 + 0.01^2 + 0.01^2) / 2) = 0.01;
    # half-width = t_{0.975, 2} * sd / sqrt(3) = 4.302653 * 0.01 / 1.732051 = 0.024841.
    found = paired.difference({0: 0.60, 1: 0.62, 2: 0.64}, {0: 0.65, 1: 0.66, 2: 0.70})
    assert found.n == 3
    assert found.mean == pytest.approx(0.05, abs=1e-9)
    assert found.half_width == pytest.approx(0.024841, abs=1e-6)
    assert paired.verdict(found) == "better than the baseline"


def test_five_pairs_against_a_hand_computation():
    # d = 0.01, -0.02, 0.03, 0.00, 0.01: mean 0.006; deviations 0.004, -0.026, 0.024,
    # -0.006, 0.004; squares sum to 0.00132; sd = sqrt(0.00132 / 4) = 0.018166;
    # half-width = t_{0.975, 4} * sd / sqrt(5) = 2.776445 * 0.018166 / 2.236068 = 0.022556:
    # the interval [-0.016556, 0.028556] holds 0.
    baseline = {0: 0.70, 1: 0.71, 2: 0.69, 3: 0.72, 4: 0.70}
    candidate = {0: 0.71, 1: 0.69, 2: 0.72, 3: 0.72, 4: 0.71}
    found = paired.difference(baseline, candidate)
    assert found.n == 5
    assert found.mean == pytest.approx(0.006, abs=1e-9)
    assert found.half_width == pytest.approx(0.022556, abs=1e-6)
    assert paired.verdict(found) == "not distinguishable from the baseline"


def test_the_verdict_says_whether_the_interval_holds_zero():
    assert paired.verdict(paired.Difference(-0.05, 0.02, 3)) == "worse than the baseline"
    assert paired.verdict(paired.Difference(0.05, 0.02, 3)) == "better than the baseline"
    assert paired.verdict(paired.Difference(-0.01, 0.02, 3)) == (
        "not distinguishable from the baseline")
    assert paired.verdict(paired.Difference(0.0, 0.0, 3)) == (
        "not distinguishable from the baseline")


def test_pairs_are_made_by_seed_whatever_the_order_of_the_runs():
    baseline = {0: 0.70, 1: 0.60, 2: 0.65, 3: 0.75, 4: 0.62}
    candidate = {seed: accuracy + 0.01 for seed, accuracy in baseline.items()}
    shuffled = list(candidate.items())
    random.Random(0).shuffle(shuffled)
    # Every pair differs by exactly 0.01: no spread; paired by position, the spread
    # of the baseline's seeds would make the interval wide enough to hold 0.
    found = paired.difference(baseline, dict(shuffled))
    assert found.mean == pytest.approx(0.01, abs=1e-9)
    assert found.half_width == pytest.approx(0, abs=1e-9)
    assert paired.verdict(found) == "better than the baseline"


def test_one_seed_gives_the_difference_without_an_interval():
    found = paired.difference({7: 0.60}, {7: 0.65})
    assert found == (pytest.approx(0.05, abs=1e-9), None, 1)
    assert paired.verdict(found) == "n/a: one seed, the interval cannot be computed"
