"""Fits the rational float32 tanh of engine/kernels/recurrent_numba.py and measures its error.

Usage: python bench/fit_tanh.py   (needs scipy, which the package itself does not use)
tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 9, P of degree 6 and Q of degree 3 in x^2, Q(0) = 1; beyond 9
the argument is clamped (tanh(9) rounds to 1 in float32). The coefficients minimise the largest
relative error on a grid by Loeb's iteration: each round a linear program in the coefficients of
|x P - tanh(x) Q| / (tanh(x) |Q_previous|), solved in the variable (x / 9)^2 to keep it well scaled.
Then the fitted function is evaluated in float32, as the kernel does, on about 2.4 million points.
"""
import numpy as np

LIMIT = 9.0
NUMERATOR_TERMS, DENOMINATOR_TERMS = 7, 4


def fit(rounds=12):
    from scipy.optimize import linprog
    x = np.concatenate([np.linspace(1e-4, 1, 2000), np.linspace(1, LIMIT, 3000)])
    u, t = (x / LIMIT) ** 2, np.tanh(x)
    previous_q = np.ones_like(x)
    best = None
    for _ in range(rounds):
        core = np.hstack([x[:, None] * u[:, None] ** np.arange(NUMERATOR_TERMS),
                          -t[:, None] * u[:, None] ** np.arange(1, DENOMINATOR_TERMS)])
        scale = 1.0 / (t * np.abs(previous_q))
        ones = np.ones((len(x), 1))
        a_ub = np.vstack([np.hstack([core * scale[:, None], -ones]), np.hstack([-core * scale[:, None], -ones])])
        b_ub = np.concatenate([t * scale, -t * scale])
        cost = np.zeros(a_ub.shape[1])
        cost[-1] = 1.0
        solution = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * a_ub.shape[1], method="highs").x
        p_u = solution[:NUMERATOR_TERMS]
        q_u = np.concatenate([[1.0], solution[NUMERATOR_TERMS:-1]])
        previous_q = np.polyval(q_u[::-1], u)
        worst = np.max(np.abs(x * np.polyval(p_u[::-1], u) / previous_q / t - 1))
        if best is None or worst < best[0]:
            best = (worst, p_u, q_u)
    worst, p_u, q_u = best
    # back from the variable (x / LIMIT)^2 to x^2
    return worst, p_u / LIMIT ** (2 * np.arange(NUMERATOR_TERMS)), q_u / LIMIT ** (2 * np.arange(DENOMINATOR_TERMS))


def float32_error():
    """(largest absolute error, in units of float32 spacing) of the kernel's float32 evaluation."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from engine.kernels.recurrent_numba import tanh_into
    grid = np.concatenate([np.linspace(-12, 12, 2_000_001), np.logspace(-8, 1.1, 200_001),
                           -np.logspace(-8, 1.1, 200_001)]).astype(np.float32)
    ours = np.empty_like(grid)
    tanh_into(grid, ours)
    exact = np.tanh(grid.astype(np.float64))
    error = np.abs(ours.astype(np.float64) - exact)
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    numpy_error = np.abs(np.tanh(grid).astype(np.float64) - exact) / spacing
    return error.max(), (error / spacing).max(), numpy_error.max()


def main():
    worst, p, q = fit()
    print(f"largest relative error in exact arithmetic: {worst:.3g}")
    print("numerator (x^0, x^2, ...):  ", ", ".join(repr(float(v)) for v in p))
    print("denominator (x^0, x^2, ...):", ", ".join(repr(float(v)) for v in q))
    absolute, spacings, numpy_spacings = float32_error()
    print(f"the kernel in float32 (its own coefficients): largest error {absolute:.3g} = {spacings:.2f} "
          f"float32 spacings (NumPy's float32 tanh: {numpy_spacings:.2f})")


if __name__ == "__main__":
    main()
