"""Standard errors by batch means (wlm.stats) on streams whose answer is known."""
import math

import numpy as np
import pytest

from wlm import stats


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    """x_t = phi x_(t-1) + e_t, e_t ~ N(0, 1), started from its stationary distribution."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1 - phi * phi)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def ar1_se(n: int, phi: float) -> float:
    """The exact standard error of the mean of n values of a stationary AR(1) with unit noise:
    var = gamma0 / n * (1 + 2 sum_k (1 - k/n) phi^k), gamma0 = 1 / (1 - phi^2)."""
    k = np.arange(1, n)
    return math.sqrt((1 + 2 * np.sum((1 - k / n) * phi ** k)) / (1 - phi * phi) / n)


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_batch_means_match_the_analytic_error_of_an_autocorrelated_stream(phi):
    """An AR(1) loss stream of 200,000 tokens, blocks of 1,000 (200 of them: the 20 blocks of the
    default rule are checked below): the batch-means standard error is within 15% of the exact
    one (seen: 1-2% off); the per-token one, which assumes independent
    tokens, is off by more than 15% (by sqrt((1 - phi) / (1 + phi)): 0.58x at 0.5, 0.23x at 0.9),
    so it would fail this test."""
    n = 200_000
    x = 5.0 + 0.3 * ar1(n, phi, seed=1)                       # a loss-like level and scale
    exact = 0.3 * ar1_se(n, phi)
    se = stats.batch_means_se(x, 1000)
    assert abs(se / exact - 1) < 0.15, (se, exact)
    naive = stats.naive_se(x)
    assert abs(naive / exact - 1) > 0.15, (naive, exact)
    # the default rule, 20 blocks of 10,000: right on average over streams (each within ~16% x 2)
    seen = [stats.batch_means_se(0.3 * ar1(n, phi, seed=s)) / exact for s in range(10, 18)]
    assert abs(np.mean(seen) - 1) < 0.15 and all(0.5 < r < 1.5 for r in seen), seen


def test_a_paired_difference_cancels_what_both_streams_share():
    """Two 'models' on the same text: a shared AR(1) difficulty plus each one's own AR(1) part.
    The paired error of their difference is that of the difference alone (within 15%), far
    below what the two losses' own errors would suggest; a model against itself: exactly 0."""
    n, phi = 200_000, 0.9
    shared = ar1(n, phi, seed=2)
    a = 5 + shared + 0.1 * ar1(n, phi, seed=3)
    b = 5 + shared + 0.1 * ar1(n, phi, seed=4)
    exact = 0.1 * math.sqrt(2) * ar1_se(n, phi)               # the two own parts are independent
    se = stats.paired_se(a, b, 1000)
    assert abs(se / exact - 1) < 0.15, (se, exact)
    assert se < 0.2 * math.hypot(stats.batch_means_se(a), stats.batch_means_se(b))
    assert stats.paired_se(a, a) == 0.0


def test_block_length_rule_and_too_few_blocks():
    assert stats.block_tokens(245_568) == 12_278 and stats.block_tokens(20_000) == 1000
    assert stats.block_tokens(2_000) == 100 and stats.block_tokens(5) == 1
    assert stats.batch_means_se(np.ones(1)) is None
    assert stats.batch_means_se(np.arange(30.0), block=20) is None       # one whole block: no spread
    with pytest.raises(ValueError, match="n must be at least 1"):
        stats.block_tokens(0)


def test_the_rms_error_by_the_delta_method():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 100_000)                             # independent: rms 2, se of rms ~ 2 / sqrt(2n)
    assert stats.rms_se(x, block=100) == pytest.approx(2 / math.sqrt(2 * len(x)), rel=0.15)


def test_a_ratio_interval_holds_the_ratio_and_is_narrow_when_the_blocks_agree():
    r, lo, hi = stats.ratio_ci([2.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    assert r == 2.0 and lo == hi == 2.0
    rng = np.random.default_rng(1)
    den = rng.uniform(0.9, 1.1, 200)
    num = 3 * den * rng.normal(1, 0.05, 200)                  # a true ratio of 3, 5% noise per block
    r, lo, hi = stats.ratio_ci(num, den)
    assert lo < 3 < hi and hi - lo < 0.1 and lo < r < hi
    assert stats.ratio_ci([1.0], [1.0]) is None
    sums = stats.block_sums(np.ones(10), 4)
    assert list(sums) == [4.0, 6.0]                           # the partial group joins the last whole one


def test_the_figures_as_people_read_them():
    assert stats.fmt_pm(0.00441, 0.00062) == "+0.0044 ± 0.0006"
    assert stats.fmt_pm(0.9466, 0.0012, 4, sign=False) == "0.9466 ± 0.0012"
    assert stats.fmt_pm(0.0044, None) == "+0.0044"                          # an older record
    assert stats.fmt_pm(-0.00001, 0.0002) == "+0.0000 ± 0.0002"             # no negative zero
    assert stats.fmt_pm(-0.00001, None, 4, sign=False) == "0.0000" and stats.fmt_pm(-0.00006, None) == "-0.0001"
    assert stats.within_noise(0.0015, 0.0011) and not stats.within_noise(0.0044, 0.0006)
    assert not stats.within_noise(0.0, None)
    assert stats.noise_mark(-0.0001, 0.0003) == " (within noise)" and stats.noise_mark(0.01, 0.001) == ""
    assert stats.fmt_ci(2.5, [2.41, 2.6]) == "2.50x [2.41-2.60]" and stats.fmt_ci(2.5, None) == "2.50x"
