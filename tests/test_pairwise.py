"""The pairwise difference: its interval's coverage, its tests' error rates, its verdicts.

The studies are synthetic with a known answer: two architectures whose
networks differ by seed (initialisation) and by image (difficulty, and which
images suit which architecture), scored on test images drawn from a
population. The true difference is the population's, over seeds and images.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnvsmlp import pairwise


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def study(rng, seeds, images, lead=0.3, seed_sd=0.15, suits=0.5, noise=1.0):
    """Per-image correctness ``(seeds, images)`` of architectures a and b on one test set."""
    difficulty = rng.normal(1.5, 1.5, images)
    suits_a = rng.normal(0, suits, images)  # images that suit a more than b
    a = difficulty + lead + suits_a + rng.normal(0, seed_sd, (seeds, 1))
    b = difficulty + rng.normal(0, seed_sd, (seeds, 1))
    a = a + rng.normal(0, noise, (seeds, images))
    b = b + rng.normal(0, noise, (seeds, images))
    return rng.random((seeds, images)) < _logistic(a), rng.random((seeds, images)) < _logistic(b)


def truth(lead=0.3, seed_sd=0.15, suits=0.5, noise=1.0, draws=2_000_000):
    """The population's accuracy difference, by Monte Carlo (standard error about 3e-4)."""
    rng = np.random.default_rng(12345)
    difficulty = rng.normal(1.5, 1.5, draws)
    sd = np.hypot(seed_sd, noise)
    a = _logistic(difficulty + lead + rng.normal(0, suits, draws) + rng.normal(0, sd, draws))
    b = _logistic(difficulty + rng.normal(0, sd, draws))
    return float(a.mean() - b.mean())


def coverage(studies, seeds, images, seed=0, **model):
    """Share of synthetic studies whose 95% interval holds the true difference."""
    rng = np.random.default_rng(seed)
    target = truth(**model)
    held = 0
    for _ in range(studies):
        ca, cb = study(rng, seeds, images, **model)
        (d,) = pairwise.decide([pairwise.estimate("a", "b", ca, cb)])
        held += d.low <= target <= d.high
    return held / studies


def test_the_interval_covers_the_true_difference_95_times_in_100():
    # Fast: 400 studies of 5 seeds x 1,500 images (binomial sd of the share: 1.1 points).
    assert 0.925 <= coverage(400, seeds=5, images=1500) <= 0.975


@pytest.mark.bench
@pytest.mark.parametrize(
    ("seeds", "images", "seed_sd", "low", "high"),
    [
        (10, 10000, 0.05, 0.93, 0.97),  # the committed comparison's design
        (10, 2000, 0.15, 0.93, 0.97),
        (5, 2000, 0.15, 0.93, 0.97),
        (5, 2000, 0.0, 0.93, 0.975),  # no seed spread: slightly conservative
        (3, 2000, 0.15, 0.90, 0.97),  # 3 seeds: Satterthwaite's t runs a little short
    ],
)
def test_coverage_over_a_thousand_studies(seeds, images, seed_sd, low, high):
    found = coverage(1000, seeds=seeds, images=images, seed=seeds, seed_sd=seed_sd)
    print(f"coverage {seeds} seeds x {images} images, seed sd {seed_sd}: {found:.3f}")
    assert low <= found <= high


def test_the_test_image_term_is_needed_where_images_dominate():
    """No seed spread, images that strongly suit one architecture: an interval over seeds
    alone (the negative control) misses the image sampling; this one does not."""
    from scipy.stats import t

    model = {"suits": 2.0, "noise": 0.1, "seed_sd": 0.0}
    target = truth(**model)
    rng = np.random.default_rng(1)
    ours = seeds_only = 0
    for _ in range(300):
        ca, cb = study(rng, 5, 1500, **model)
        (d,) = pairwise.decide([pairwise.estimate("a", "b", ca, cb)])
        ours += d.low <= target <= d.high
        per_seed = ca.mean(1) - cb.mean(1)
        half = per_seed.std(ddof=1) / np.sqrt(5) * t.ppf(0.975, 4)
        seeds_only += abs(per_seed.mean() - target) <= half
    assert ours / 300 >= 0.925
    assert seeds_only / 300 <= 0.90


def test_one_seed_covers_the_test_images_only():
    """With one seed the seed-to-seed spread is missing: the interval is too narrow for it."""
    assert coverage(300, seeds=1, images=1500, seed_sd=0.3) < 0.85


def test_without_seed_spread_the_interval_still_holds():
    assert coverage(300, seeds=5, images=1500, seed_sd=0.0) >= 0.925


def test_the_variance_is_the_crossed_anova_by_hand():
    x = np.array([[1, 0, -1, 0, 1], [1, 1, 0, 0, 0], [0, 1, -1, 1, 1]], dtype=float)
    s, n = x.shape
    m = x.mean()
    ms_seed = n * ((x.mean(1) - m) ** 2).sum() / (s - 1)
    ms_image = s * ((x.mean(0) - m) ** 2).sum() / (n - 1)
    res = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + m
    ms_res = (res**2).sum() / ((s - 1) * (n - 1))
    assert ms_image > ms_res > ms_seed  # the seed component clamps at 0
    mean, se, df = pairwise.crossed(x)
    assert mean == pytest.approx(m)
    assert se**2 == pytest.approx(ms_image / (s * n))
    assert df == pytest.approx(n - 1)


def test_one_seed_is_the_paired_t_over_images():
    x = np.array([[1, 0, 0, -1, 1, 1, 0, 0]], dtype=float)
    mean, se, df = pairwise.crossed(x)
    assert (mean, df) == (pytest.approx(0.25), 7)
    assert se == pytest.approx(x.std(ddof=1) / np.sqrt(8))


def test_no_difference_is_rejected_at_the_stated_rate():
    rng = np.random.default_rng(3)
    rejected = 0
    for _ in range(300):
        ca, cb = study(rng, 5, 1000, lead=0.0, suits=0.0)
        rejected += pairwise.decide([pairwise.estimate("a", "b", ca, cb)])[0].verdict == "different"
    assert rejected / 300 <= 0.08


def _known(mean, se, df=20.0):
    return pairwise.Estimate("a", "b", mean, se, df, 5, 1000, "seeds-and-images", (mean,) * 5)


@pytest.mark.parametrize(
    ("mean", "se", "verdict"),
    [
        (0.040, 0.003, "different"),  # far from 0
        (0.001, 0.002, "equivalent"),  # both one-sided tests reject |d| >= 1 point
        (0.006, 0.004, "inconclusive"),  # neither 0 nor 1 point excluded
        (-0.03, 0.003, "different"),  # b is better
    ],
)
def test_tost_and_the_difference_on_known_cases(mean, se, verdict):
    (d,) = pairwise.decide([_known(mean, se)], margin=0.01)
    assert d.verdict == verdict
    # The verdict agrees with the printed interval: different exactly when it excludes 0.
    assert (d.verdict == "different") == (d.low > 0 or d.high < 0)
    # Equivalent exactly when the printed interval lies inside the margin.
    assert (d.p_equivalence_adjusted < 0.05) == (-0.01 < d.low and d.high < 0.01)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_equivalence_agrees_with_the_printed_interval_in_any_family(k):
    for mean in np.linspace(-0.012, 0.012, 49):
        (d, *_) = pairwise.decide([_known(float(mean), 0.002, df=9)] * k, margin=0.01)
        assert (d.verdict == "equivalent") == (
            -0.01 < d.low and d.high < 0.01 and d.low <= 0 <= d.high
        )
        inside = -0.01 < d.low and d.high < 0.01
        assert (d.p_equivalence_adjusted < 0.05) == inside


def test_tost_p_value_by_hand():
    from scipy.stats import t

    (d,) = pairwise.decide([_known(0.002, 0.003, df=9)], margin=0.01)
    lower = t.sf((0.002 + 0.01) / 0.003, 9)
    upper = t.cdf((0.002 - 0.01) / 0.003, 9)
    assert d.p_equivalence == pytest.approx(max(lower, upper))


def test_equivalence_at_the_margin_is_claimed_at_most_at_the_stated_rate():
    """A true difference of exactly m: TOST may call it equivalent in at most 5% of studies."""
    rng = np.random.default_rng(5)
    margin = truth(lead=0.05, suits=0.0)
    claimed = 0
    for _ in range(300):
        ca, cb = study(rng, 5, 1500, lead=0.05, suits=0.0)
        (d,) = pairwise.decide([pairwise.estimate("a", "b", ca, cb)], margin=margin)
        claimed += d.verdict == "equivalent"
    assert claimed / 300 <= 0.07


def test_a_family_widens_every_interval_by_bonferroni():
    alone = pairwise.decide([_known(0.01, 0.004)])[0]
    three = pairwise.decide([_known(0.01, 0.004)] * 3)[0]
    assert three.level == pytest.approx(1 - 0.05 / 3) and three.family == 3
    assert three.high - three.low > alone.high - alone.low
    assert three.p_adjusted == pytest.approx(min(1, 3 * alone.p_value))


def test_the_bound_from_counts_is_never_narrower_than_the_exact_interval():
    rng = np.random.default_rng(7)
    for model in ({}, {"suits": 2.0, "noise": 0.1, "seed_sd": 0.0}):
        for _ in range(20):
            ca, cb = study(rng, 3, 2000, **model)
            (exact,) = pairwise.decide([pairwise.estimate("a", "b", ca, cb)])
            only_a, only_b = (ca & ~cb).sum(1), (~ca & cb).sum(1)
            per_seed, disagree = (only_a - only_b) / 2000, (only_a + only_b) / 2000
            (bound,) = pairwise.decide([pairwise.bounded("a", "b", per_seed, disagree, 2000)])
            assert bound.estimate == pytest.approx(exact.estimate)
            assert bound.se >= exact.se * 0.999 and bound.df == 2
            assert bound.high - bound.low >= (exact.high - exact.low) * 0.999


def test_a_flipped_difference_states_b_minus_a():
    (d,) = pairwise.decide([_known(0.02, 0.004)])
    f = d.flipped()
    assert (f.a, f.b, f.estimate, f.low, f.high) == ("b", "a", -d.estimate, -d.high, -d.low)
    assert f.verdict == d.verdict and f.p_value == d.p_value
