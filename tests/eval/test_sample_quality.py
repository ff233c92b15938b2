import numpy as np
import pytest
import torch

from genlab.eval.sample_quality import feature_stats, fid, frechet_distance, inception_score


def test_frechet_distance_of_known_gaussians():
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    cov = np.eye(3)
    assert frechet_distance(mu1, cov, mu1, cov) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, cov, mu2, cov) == pytest.approx(9.0)  # only the means differ
    # Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    assert frechet_distance(mu1, a, mu1, b) == pytest.approx(1.0 + 0.0 + 4.0)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    torch.manual_seed(0)
    real = torch.rand(400, 1, 4, 4)

    def flat(x):
        return x.flatten(1)

    assert fid(flat, real, real) == pytest.approx(0.0, abs=1e-6)
    assert fid(flat, real, real + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)  # shift of 0.5 in 16 dims
    with pytest.raises(ValueError):
        feature_stats(np.zeros((1, 3)))


def test_inception_score_bounds():
    k = 10
    confident_and_varied = np.eye(k)[np.arange(100) % k]
    assert inception_score(confident_and_varied) == pytest.approx(k, rel=1e-6)
    one_class = np.eye(k)[np.zeros(100, dtype=int)]
    assert inception_score(one_class) == pytest.approx(1.0)
    uniform = np.full((100, k), 1.0 / k)
    assert inception_score(uniform) == pytest.approx(1.0)
