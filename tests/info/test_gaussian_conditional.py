"""The jointly Gaussian ground truth itself (``xattr.info.gaussian_conditional``) against independent references:
``torch.distributions.MultivariateNormal`` densities, numerical integration of the MMSE gap, ``torch.unique``.

The estimator tests (``test_pointwise.py``) compare estimates with these closed forms, so an error here would
move the target of every Info-Decomp check; each closed form is checked on its own here."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal

from xattr.errors import XattrError
from xattr.info import JointGaussian, random_joint_gaussian
from xattr.info.gaussian_conditional import _distinct_rows

Y, C = [0, 1], [2, 3]


@pytest.fixture(scope="module")
def model() -> JointGaussian:
    return random_joint_gaussian(3, 4, coupling=0.9, generator=torch.Generator().manual_seed(4))


def reference_log_density(model: JointGaussian, x: torch.Tensor, w: torch.Tensor, observed) -> torch.Tensor:
    """``log p(x | w_S)`` ``[n]`` from the joint covariance by the textbook conditional, through torch's MVN."""
    d, cov = model.x_dim, model.covariance
    s = [d + i for i in observed]
    if not s:
        return MultivariateNormal(torch.zeros(d, dtype=torch.float64), cov[:d, :d]).log_prob(x)
    jxs, jss = cov[:d][:, s], cov[s][:, s]
    mean = w[:, observed] @ torch.linalg.solve(jss, jxs.T)
    conditional = cov[:d, :d] - jxs @ torch.linalg.solve(jss, jxs.T)
    return MultivariateNormal(mean, 0.5 * (conditional + conditional.T)).log_prob(x)


@pytest.mark.parametrize("cond, ref", [(Y, []), (Y + C, C), (C, [])])
def test_log_likelihood_ratio_is_the_difference_of_conditional_gaussian_log_densities(model, cond, ref):
    x, w = model.sample(20_000, generator=torch.Generator().manual_seed(5))
    expected = reference_log_density(model, x, w, cond) - reference_log_density(model, x, w, ref)
    assert torch.allclose(model.log_likelihood_ratio(x, w, cond, ref), expected, atol=1e-9)
    assert model.log_likelihood_ratio(x, w, cond, ref).mean().item() == pytest.approx(
        model.information(cond, ref), rel=0.05)   # its mean over (x, w) is the (C)MI


@pytest.mark.parametrize("cond, ref", [(Y, []), (Y + C, C)])
def test_truncated_information_is_half_the_integral_of_the_mmse_gap(model, cond, ref):
    """``½ ∫_lo^hi Σ_k σ(α + log λ_k^ref) − σ(α + log λ_k^cond) dα`` by a fine trapezoid, and the whole line
    (a range far wider than every λ) gives ``½ log det Σ_ref − ½ log det Σ_cond``."""
    low, high = -3.0, 5.0
    alpha = torch.linspace(low, high, 20_001, dtype=torch.float64)

    def trace_mmse(observed):
        return torch.sigmoid(alpha[:, None] + model.conditional_eigenvalues(observed).log()[None]).sum(1)

    numeric = 0.5 * torch.trapezoid(trace_mmse(ref) - trace_mmse(cond), alpha).item()
    assert model.truncated_information(cond, ref, low=low, high=high) == pytest.approx(numeric, rel=1e-6)
    assert model.truncated_information(cond, ref, low=-60.0, high=60.0) == pytest.approx(
        model.information(cond, ref), rel=1e-9)
    split = sum(model.truncated_information(cond, ref, low=a, high=b) for a, b in ((low, 1.0), (1.0, high)))
    assert split == pytest.approx(model.truncated_information(cond, ref, low=low, high=high), rel=1e-9)


def test_information_is_the_half_log_determinant_ratio_and_the_chain_rule_holds(model):
    d = model.x_dim
    marginal = torch.linalg.slogdet(model.covariance[:d, :d]).logabsdet.item()
    conditional = torch.linalg.slogdet(model.conditional(Y)[1]).logabsdet.item()
    assert model.information(Y) == pytest.approx(0.5 * (marginal - conditional), rel=1e-12)
    assert model.information(Y + C) == pytest.approx(model.information(C) + model.information(Y + C, C), rel=1e-9)


def test_random_joint_gaussian_is_a_correlation_matrix_with_the_default_coupling():
    model = random_joint_gaussian(2, 3, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(model.covariance.diagonal(), torch.ones(5, dtype=torch.float64))
    stated = random_joint_gaussian(2, 3, coupling=0.6, generator=torch.Generator().manual_seed(8))
    assert torch.equal(model.covariance, stated.covariance) and model.x_dim == 2 and model.cond_dim == 3


def test_samples_follow_the_covariance_and_the_generator(model):
    x, w = model.sample(40_000, generator=torch.Generator().manual_seed(6))
    assert x.shape == (40_000, 3) and w.shape == (40_000, 4)
    empirical = torch.cov(torch.cat([x, w], 1).T)
    assert torch.allclose(empirical, model.covariance, atol=0.03)
    again = model.sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again[0], model.sample(5, generator=torch.Generator().manual_seed(7))[0])
    assert model.sample(3, dtype=torch.float32)[0].dtype == torch.float32


def test_condition_masks_the_unobserved_coordinates(model):
    w = torch.arange(1.0, 9.0).reshape(2, 4)
    c = model.condition(w, [1, 3])
    assert torch.equal(c, torch.tensor([[0.0, 2, 0, 4, 0, 1, 0, 1], [0, 6, 0, 8, 0, 1, 0, 1]]))
    assert torch.equal(model.condition(w, torch.tensor([False, True, False, True])), c)


def test_denoiser_refuses_mismatched_shapes(model):
    eps_fn = model.eps_denoiser()
    z, c = torch.zeros(2, 3), torch.zeros(2, 8)
    assert eps_fn(z, torch.zeros(2), c).shape == (2, 3)
    for bad in ((torch.zeros(2, 4), torch.zeros(2), c), (z, torch.zeros(3), c), (z, torch.zeros(2), c[:, :6])):
        with pytest.raises(XattrError, match="JointGaussian denoiser"):
            eps_fn(*bad)


@pytest.mark.parametrize("width", [5, 70])
def test_distinct_rows_is_torch_unique_over_rows(width):
    """Both branches (integer keys up to 62 columns, ``torch.unique(dim=0)`` beyond): the same distinct rows and
    each row's group."""
    generator = torch.Generator().manual_seed(width)
    rows = torch.rand(6, width, generator=generator) > 0.5
    masks = rows[torch.randint(0, 6, (40,), generator=generator)]
    distinct, group = _distinct_rows(masks)
    assert torch.equal(distinct[group], masks)
    assert distinct.shape[0] == torch.unique(masks, dim=0).shape[0]


@pytest.mark.parametrize("covariance, x_dim", [(torch.eye(3), 0), (torch.eye(3), 3), (torch.ones(3, 2), 1),
                                               (torch.ones(4), 1)])
def test_bad_covariance_or_x_dim_is_one_line(covariance, x_dim):
    with pytest.raises(XattrError, match="JointGaussian: covariance"):
        JointGaussian(covariance, x_dim)


def test_one_coordinate_of_x_and_one_of_w_are_enough():
    model = JointGaussian(torch.tensor([[1.0, 0.5], [0.5, 1.0]]), 1)
    assert model.cond_dim == 1 and model.information([0]) == pytest.approx(-0.5 * torch.log(torch.tensor(0.75)).item())
