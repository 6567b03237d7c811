"""nets.kernels.simd: the vector intrinsics the kernels are built from, against numpy."""
import numpy as np
import pytest
from numba import njit

from nets.kernels.simd import (LANES, vbroadcast, vevens, vexp, vhmax, vload, vmax, vodds, vselect_gt,
                               vsplat, vstore, vsum, vtanh)


@njit(cache=True)
def _map_exp(y, x):
    for i in range(0, x.shape[0], LANES):
        vstore(y, i, vexp(vload(x, i)))


@njit(cache=True)
def _map_tanh(y, x):
    for i in range(0, x.shape[0], LANES):
        vstore(y, i, vtanh(vload(x, i)))


@njit(cache=True)
def _lanes(out, a, b):
    # out rows: evens, odds, max, select(a > b, 1, 0), broadcast a[3]; returns (sum, max) of a
    vstore(out, 0, vevens(vload(a, 0), vload(b, 0)))
    vstore(out, LANES, vodds(vload(a, 0), vload(b, 0)))
    vstore(out, 2 * LANES, vmax(vload(a, 0), vload(b, 0)))
    one, zero = vsplat(a.dtype.type(1.0)), vsplat(a.dtype.type(0.0))
    vstore(out, 3 * LANES, vselect_gt(vload(a, 0), vload(b, 0), one, zero))
    vstore(out, 4 * LANES, vbroadcast(a, 3))
    return vsum(vload(a, 0)), vhmax(vload(a, 0))


def _ulps(got, want, dtype):
    return np.max(np.abs(got - want) / np.maximum(np.abs(want), np.finfo(dtype).tiny)) / np.finfo(dtype).eps


@pytest.mark.parametrize("dtype, limit", [(np.float32, 2.0), (np.float64, 1.0)])
def test_vexp_accuracy_underflow_nan(dtype, limit):
    x = np.concatenate([np.linspace(-87, 88, 160000), [-1000.0] * 16, [np.nan] * 16]).astype(dtype)
    y = np.empty_like(x)
    _map_exp(y, x)
    n = 160000
    assert _ulps(y[:n], np.exp(x[:n].astype(np.float64)), dtype) <= limit
    assert (y[n:n + 16] == 0).all() and np.isnan(y[n + 16:]).all()


@pytest.mark.parametrize("dtype, limit", [(np.float32, 3.0), (np.float64, 2.0)])
def test_vtanh_accuracy_saturation_nan(dtype, limit):
    x = np.concatenate([np.linspace(-12, 12, 160000), np.linspace(-1e-3, 1e-3, 1600),
                        [np.inf, -np.inf] * 8, [np.nan] * 16]).astype(dtype)
    y = np.empty_like(x)
    _map_tanh(y, x)
    n = 161600
    assert _ulps(y[:n], np.tanh(x[:n].astype(np.float64)), dtype) <= limit
    assert np.allclose(y[n:n + 16], np.tile([1.0, -1.0], 8), atol=3e-7) and np.isnan(y[n + 16:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_operations(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(LANES).astype(dtype), rng.standard_normal(LANES).astype(dtype)
    out = np.empty(5 * LANES, dtype)
    s, m = _lanes(out, a, b)
    both = np.concatenate([a, b])
    np.testing.assert_array_equal(out[:LANES], both[0::2])
    np.testing.assert_array_equal(out[LANES:2 * LANES], both[1::2])
    np.testing.assert_array_equal(out[2 * LANES:3 * LANES], np.maximum(a, b))
    np.testing.assert_array_equal(out[3 * LANES:4 * LANES], (a > b).astype(dtype))
    assert (out[4 * LANES:] == a[3]).all()
    assert s == pytest.approx(float(a.astype(np.float64).sum()), rel=1e-6) and m == a.max()
