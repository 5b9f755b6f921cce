"""Black-76 analytics for options on NQ futures: value, delta, gamma, implied volatility.

One implementation for every analysis that needs a greek (delta-signed volume in the engine,
dealer hedge estimates, gamma maps, touch probabilities), vectorised over numpy arrays and built
on SciPy's normal distribution function (``ndtr``) rather than a hand-written approximation; the
density is SciPy's own formula, written out so the engine does not import ``scipy.stats`` (1.3 s
of each worker's start-up). Prices are in index
points; time is in years (ACT/365.25, the convention the simulator also uses); the discount rate
is a parameter with the simulator's default so the two agree on synthetic data.

Expired options (tau ≤ 0) get intrinsic value and a step delta (1/0 for calls, −1/0 for puts);
an option at the money at expiry gets delta ±0.5.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

YEAR_NS = 365.25 * 86_400 * 1e9
RATE = 0.04
DEFAULT_VOL = 0.20  # used only where a caller has no implied vol and says so
IV_LO, IV_HI = 0.01, 5.0

F64 = NDArray[np.float64]
_SQRT_2PI = np.sqrt(2 * np.pi)  # scipy.stats' _norm_pdf_C


def norm_pdf(x: F64) -> F64:
    """The standard normal density, the expression ``scipy.stats.norm.pdf`` evaluates (so the
    same bits), without importing ``scipy.stats``."""
    return np.exp(-(x**2) / 2.0) / _SQRT_2PI


def _arrays(*xs: ArrayLike) -> list[F64]:
    return [np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(*xs)]


def _d1_d2(f: F64, k: F64, tau: F64, vol: F64) -> tuple[F64, F64, F64]:
    live = (tau > 0) & (vol > 0) & (f > 0) & (k > 0)
    sd = np.where(live, vol * np.sqrt(np.where(live, tau, 1.0)), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(np.where(live, f / k, 1.0)) + 0.5 * sd * sd) / sd
    return d1, d1 - sd, live


def value(
    forward: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    rate: float = RATE,
) -> F64:
    f, k, tau, v, call = _arrays(forward, strike, tau_years, vol, is_call)
    call = call.astype(bool)
    d1, d2, live = _d1_d2(f, k, tau, v)
    disc = np.exp(-rate * np.maximum(tau, 0.0))
    c = disc * (f * ndtr(d1) - k * ndtr(d2))
    p = disc * (k * ndtr(-d2) - f * ndtr(-d1))
    intrinsic = np.where(call, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    return np.where(live, np.maximum(np.where(call, c, p), 0.0), intrinsic)


def delta(
    forward: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    rate: float = RATE,
) -> F64:
    """dV/dF: in futures per option (an NQ option is on one future)."""
    f, k, tau, v, call = _arrays(forward, strike, tau_years, vol, is_call)
    call = call.astype(bool)
    d1, _, live = _d1_d2(f, k, tau, v)
    disc = np.exp(-rate * np.maximum(tau, 0.0))
    live_delta = np.where(call, disc * ndtr(d1), -disc * ndtr(-d1))
    step = np.where(f > k, 1.0, np.where(f < k, 0.0, 0.5))
    expired = np.where(call, step, step - 1.0)
    return np.where(live, live_delta, expired)


def gamma(
    forward: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    vol: ArrayLike,
    rate: float = RATE,
) -> F64:
    """d²V/dF², the same for calls and puts; 0 once expired."""
    f, k, tau, v = _arrays(forward, strike, tau_years, vol)
    d1, _, live = _d1_d2(f, k, tau, v)
    disc = np.exp(-rate * np.maximum(tau, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = disc * norm_pdf(d1) / (f * v * np.sqrt(tau))
    return np.where(live, g, 0.0)


def prob_itm(
    forward: ArrayLike, strike: ArrayLike, tau_years: ArrayLike, vol: ArrayLike, is_call: ArrayLike
) -> F64:
    """Risk-neutral probability of finishing in the money, N(±d2)."""
    f, k, tau, v, call = _arrays(forward, strike, tau_years, vol, is_call)
    call = call.astype(bool)
    _, d2, live = _d1_d2(f, k, tau, v)
    p = np.where(call, ndtr(d2), ndtr(-d2))
    step = np.where(call, (f > k).astype(float), (f < k).astype(float))
    return np.where(live, p, step)


def implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    is_call: ArrayLike,
    rate: float = RATE,
    iterations: int = 80,
) -> F64:
    """Vectorised bisection on [1 %, 500 %]; NaN where the price is outside the no-arbitrage
    range (below intrinsic or above the forward/strike bound) or the option has expired."""
    px, f, k, tau, call = _arrays(price, forward, strike, tau_years, is_call)
    lo = np.full(px.shape, IV_LO)
    hi = np.full(px.shape, IV_HI)
    v_lo = value(f, k, tau, lo, call, rate)
    v_hi = value(f, k, tau, hi, call, rate)
    ok = (tau > 0) & (px >= v_lo) & (px <= v_hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = value(f, k, tau, mid, call, rate) > px
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(ok, 0.5 * (lo + hi), np.nan)


def tau_years(expiration_ns: ArrayLike, now_ns: ArrayLike) -> F64:
    e, n = _arrays(expiration_ns, now_ns)
    return np.maximum(e - n, 0.0) / YEAR_NS
