"""Batched isotonic regression against scikit-learn's pool-adjacent-violators, one row at a time."""

import numpy as np
import pytest
import torch
from sklearn.isotonic import IsotonicRegression

from xattr.utils.isotonic import isotonic_regression


@pytest.mark.parametrize("n", [1, 2, 5, 15])
def test_equals_scikit_learn_row_by_row(n):
    y = torch.randn(200, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    reference = np.stack([IsotonicRegression().fit_transform(np.arange(n), row) for row in y.numpy()])
    np.testing.assert_allclose(isotonic_regression(y).numpy(), reference, rtol=0, atol=1e-12)


def test_works_along_any_dim_and_keeps_the_shape():
    y = torch.randn(3, 7, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    along_1 = isotonic_regression(y, dim=1)
    assert along_1.shape == y.shape
    torch.testing.assert_close(along_1, isotonic_regression(y.movedim(1, -1)).movedim(-1, 1))
    assert (along_1.diff(dim=1) >= -1e-12).all()


def test_monotone_rows_are_fixed_points_and_row_sums_are_kept():
    sorted_rows = torch.rand(10, 9, dtype=torch.float64).sort(-1).values
    torch.testing.assert_close(isotonic_regression(sorted_rows), sorted_rows, rtol=0, atol=1e-12)
    y = torch.randn(10, 9, dtype=torch.float64)
    torch.testing.assert_close(isotonic_regression(y).sum(-1), y.sum(-1))


def test_a_decreasing_pair_pools_to_its_mean_and_the_gradient_is_spread_over_the_block():
    y = torch.tensor([[0.0, 3.0, 1.0, 4.0]], requires_grad=True)
    fitted = isotonic_regression(y)
    torch.testing.assert_close(fitted.detach(), torch.tensor([[0.0, 2.0, 2.0, 4.0]]))
    fitted[0, 1].backward()
    torch.testing.assert_close(y.grad, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))


def test_tied_inputs_pool_whatever_their_round_off():
    """Clipped schedules hold runs of equal values: the gradient must not follow float round-off (it did under the
    min–max formula's argmin, which made DiffIG's guided maps depend on the batch)."""
    tied = torch.tensor([[0.2, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0]])
    for noise in ([0.0] * 7, [0.0, 3e-8, -6e-8, 1e-8, 0.0, -2e-8, 2e-8], [0.0, -3e-8, 6e-8, 0.0, 0.0, 2e-8, -1e-8]):
        y = (tied + torch.tensor([noise])).requires_grad_(True)
        fitted = isotonic_regression(y)
        (fitted[0, 2] + 10 * fitted[0, 6]).backward()
        torch.testing.assert_close(fitted.detach(), torch.tensor([[0.2, 0.875, 0.875, 0.875, 0.875, 1.0, 1.0]]))
        torch.testing.assert_close(y.grad, torch.tensor([[0.0, 0.25, 0.25, 0.25, 0.25, 5.0, 5.0]]))


def test_float32_equals_scikit_learn_and_pools_equal_runs():
    y = torch.randn(100, 15, generator=torch.Generator().manual_seed(3)).clamp(-0.5, 0.5)
    reference = np.stack([IsotonicRegression().fit_transform(np.arange(15), row) for row in y.double().numpy()])
    np.testing.assert_allclose(isotonic_regression(y).numpy(), reference, rtol=0, atol=1e-6)
