"""BERT-whitening (kexue.fm/archives/8069): sklearn parity, identity covariance, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.embed import Whitening

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


def anisotropic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Correlated Gaussian vectors with a non-zero mean and a spread-out spectrum."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * np.logspace(0, -2, d)
    return rng.normal(size=(n, d)) @ mixing.T + rng.normal(size=d) * 3


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def match_signs(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Flip each column of x to the sign of the same column of ref (SVD signs are arbitrary)."""
    return x * np.sign((x * ref).sum(axis=0))


@pytest.mark.parametrize("k", [None, 5])
def test_equals_sklearn_pca_whiten_after_l2(k: int | None) -> None:
    x = anisotropic(500, 12)
    ours = Whitening(n_components=k).fit_transform(x)
    pca = sklearn_decomposition.PCA(n_components=k, whiten=True, svd_solver="full").fit(x)
    ref = pca.transform(x)
    assert ours.shape == ref.shape == (500, k or 12)
    # with ddof=1 (np.cov, like sklearn) they agree even before normalising
    np.testing.assert_allclose(match_signs(ours, ref), ref, rtol=1e-7, atol=1e-7)
    # ddof=0 (the post's 1/N) rescales everything; after L2 normalisation nothing changes
    post = Whitening(n_components=k, ddof=0).fit_transform(x)
    np.testing.assert_allclose(match_signs(l2(post), l2(ref)), l2(ref), rtol=1e-7, atol=1e-9)


def test_transformed_covariance_is_identity_and_formula() -> None:
    x = anisotropic(2000, 16, seed=1)
    w = Whitening().fit(x)
    y = w.transform(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(y.T), np.eye(16), atol=1e-6)
    # the author's recipe written out: (x - mu) U diag(1/sqrt(s)) with np.cov and np.linalg.svd
    mu = x.mean(axis=0)
    u, s, _ = np.linalg.svd(np.cov(x.T))
    ref = (x - mu) @ (u / np.sqrt(s))
    np.testing.assert_allclose(match_signs(y, ref), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.covariance_, np.cov(x.T), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.singular_values_, s, rtol=1e-8)


def test_n_components_keeps_leading_directions() -> None:
    x = anisotropic(1000, 10, seed=2)
    full = Whitening().fit(x)
    w = Whitening(n_components=4).fit(x)
    assert w.kernel_.shape == (10, 4)
    y = w.transform(x)
    np.testing.assert_allclose(np.cov(y.T), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(y, full.transform(x)[:, :4], atol=1e-8)


def test_streaming_statistics_equal_one_shot() -> None:
    x = anisotropic(3001, 20, seed=3) + 1e3  # a large offset stresses the update
    one_shot = Whitening().fit(x)
    streamed = Whitening()
    for chunk in np.array_split(x, [1, 7, 500, 501, 2000]):  # uneven chunks, one of size 1
        streamed.partial_fit(chunk)
    assert streamed.n_samples_seen_ == 3001
    np.testing.assert_allclose(streamed.mean_, one_shot.mean_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(streamed.covariance_, one_shot.covariance_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(streamed.transform(x), one_shot.transform(x), rtol=1e-8, atol=1e-8)
    # float32 chunks are accumulated in float64 too
    from_f32 = Whitening()
    for chunk in np.array_split(x.astype(np.float32), 4):
        from_f32.partial_fit(torch.from_numpy(chunk))
    np.testing.assert_allclose(
        from_f32.covariance_, np.cov(x.astype(np.float32).astype(np.float64).T), rtol=1e-10, atol=1e-8
    )


def test_eps_on_singular_covariance() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 10))  # N < d: rank 5 after centring
    x[:, 3] = 2.0  # and a constant dimension
    w = Whitening(eps=1e-9).fit(x)
    assert w.rank_ == 5
    y = w.transform(x)
    assert np.isfinite(y).all()
    # the 5 informative directions are whitened; the null directions are bounded by 1/sqrt(eps)
    np.testing.assert_allclose(np.cov(y[:, :5].T), np.eye(5), atol=1e-4)
    assert np.abs(y[:, 5:]).max() < 1e-4
    with pytest.raises(ValueError, match="n_components=7 is larger than the number of samples 6"):
        Whitening(n_components=7).fit(x)


def test_tensor_input_gives_tensor_output() -> None:
    x = anisotropic(200, 8, seed=5)
    w = Whitening(n_components=3).fit(torch.from_numpy(x))
    out = w.transform(torch.from_numpy(x).float())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (200, 3)
    np.testing.assert_allclose(out.numpy(), w.transform(x), rtol=1e-5, atol=1e-5)


def test_bad_input() -> None:
    x = anisotropic(50, 8)
    with pytest.raises(ValueError, match="n_components=9 is larger than the dimension 8"):
        Whitening(n_components=9).fit(x)
    with pytest.raises(ValueError, match="n_components >= 1"):
        Whitening(n_components=0)
    with pytest.raises(ValueError, match="0 < eps < 1"):
        Whitening(eps=0.0)
    with pytest.raises(ValueError, match="all 5 samples are identical"):
        Whitening().fit(np.ones((5, 3)))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(1 entries\)"):
        Whitening().fit(bad)
    with pytest.raises(ValueError, match="not fitted"):
        Whitening().transform(x)
    w = Whitening().fit(x)
    with pytest.raises(ValueError, match=r"shape \(n, 8\), got \(50, 7\)"):
        w.transform(x[:, :7])
    with pytest.raises(ValueError, match="chunks of dimension 8, got 7"):
        w.partial_fit(x[:, :7])
    with pytest.raises(ValueError, match="more than 1 sample"):
        Whitening().fit(x[:1])
    with pytest.raises(ValueError, match=r"\(n_samples, dim\)"):
        Whitening().fit(x[0])
