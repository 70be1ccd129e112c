"""Compiled kernels of the ``gram`` engine: lasso path solvers on a Gram matrix.

Everything here works on *sufficient statistics*, never on rows. A problem is

    minimise_beta  1/2 beta' Q beta - q' beta + alpha * ||beta||_1          (P)

with ``Q`` the weighted, centred Gram matrix divided by the total weight and
``q`` the weighted, centred ``X'y`` divided by the total weight. This is
exactly ``1 / (2 sum w) * sum_i w_i (y_i - b - x_i' beta)^2 + alpha ||beta||_1``
minimised over the intercept ``b`` too (the intercept is profiled out by the
centring), i.e. the objective scikit-learn's ``Lasso`` minimises once its
``sample_weight`` has been rescaled to sum to ``n_samples``.

The solution of (P) is piecewise linear in ``alpha``. ``_homotopy`` follows
it exactly from the smallest alpha at which it is zero down to the last grid
alpha needed (the LARS-lasso homotopy), so the coefficients at the grid alphas
are exact interpolations, with no convergence tolerance involved.
``_cd_path`` instead replays scikit-learn's coordinate descent on (P), stopping
where it stops (see ``_coordinate_descent``).

Statistics come as "augmented Grams": for the columns ``[x_1 .. x_p, 1, y]``
(already shifted by constants to keep magnitudes small), ``H = sum_i w_i a_i
a_i'``. So ``H[:p, :p]`` is ``sum w x x'``, ``H[:p, p]`` is ``sum w x``,
``H[:p, p + 1]`` is ``sum w x y``, ``H[p, p]`` is ``sum w``, ``H[p, p + 1]`` is
``sum w y`` and ``H[p + 1, p + 1]`` is ``sum w y^2``. Statistics of a union of
rows are sums, of a difference differences; centring is algebraic.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, types


def _check_blas_lightly() -> None:
    """Let numba find BLAS without importing all of ``scipy.linalg``.

    numba's ``np`` support, loaded with the first kernel, imports
    ``scipy.linalg.cython_blas`` only to learn that BLAS is there (these kernels
    call none). The usual import runs ``scipy.linalg``'s ``__init__`` first: 0.17 s
    under the GIL in every process that loads the kernels (scipy 1.17's array-API
    layer imports ``numpy.f2py``). Here the extension module is loaded on its own
    for numba's check, then dropped from ``sys.modules``: a later import of it
    gets the same module object, through ``scipy.linalg`` as usual. If scipy is
    laid out otherwise, numba imports it the usual way.
    """
    name = "scipy.linalg.cython_blas"
    if {name, "scipy.linalg", "numba.np.arraymath"} & sys.modules.keys():
        return  # numba has checked, or the import is cheap now
    try:
        scipy = importlib.util.find_spec("scipy")  # numba imports it: not a dependency of ours
        found = importlib.machinery.PathFinder.find_spec(
            "cython_blas", [str(Path(path) / "linalg") for path in scipy.submodule_search_locations]
        )
        spec = importlib.util.spec_from_file_location(name, found.origin)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            import numba.np.arraymath  # noqa: F401 -- numba's check of BLAS
        finally:
            sys.modules.pop(name, None)
    except Exception:  # numba then imports scipy.linalg itself
        return


_check_blas_lightly()

# A column whose weighted variance on the rows of a problem is at most this
# fraction of its second moment about the (shifted) global mean over all rows
# is treated as constant there: its variance is then rounding noise left by
# the subtraction of statistics, and scikit-learn leaves such a coefficient at 0.
_CONSTANT_COLUMN = 1e-10

# A column entering the active set whose squared distance to the span of the
# active columns is at most this fraction of its own variance is collinear
# with them (Cholesky pivot ~ 0); it is kept out of the path from then on.
_COLLINEAR = 1e-10

# Alphas within this relative distance are the same alpha (rounding).
_SAME_ALPHA = 1e-12

# No fast-math flags: reassociation lets LLVM reorder sums by the vector width
# of the CPU it compiles for, and contraction fuses multiply-adds where the CPU
# has FMA, so either would make the bits depend on the worker's CPU. Without
# them every build rounds each operation in source order (tested against a
# build for a generic CPU).
_FASTMATH = False


def _compiled(func: Callable[..., Any] | None = None, *, signature: tuple | None = None) -> Any:
    """Compile with numba, caching the machine code on disk where possible.

    The on-disk cache spares every new worker process the compilation (a few
    seconds); if no cache directory is writable, compile in memory instead.
    With ``signature`` (argument types), the kernel is compiled (or loaded from
    the cache) at import for those types only: calls that pass constants, such
    as ``True`` or ``-1``, then reuse it instead of compiling a copy
    specialised on the constant.
    """
    if func is None:
        return lambda func: _compiled(func, signature=signature)
    sigs = [signature] if signature is not None else None
    try:
        return njit(sigs, cache=True, nogil=True, fastmath=_FASTMATH)(func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(sigs, cache=False, nogil=True, fastmath=_FASTMATH)(func)


# Argument types of the kernels given a signature (C-contiguous arrays).
_F8, _I8, _B1 = types.float64, types.int64, types.boolean
_MATRIX, _VECTOR, _MASK, _INDEX = _F8[:, ::1], _F8[::1], _B1[::1], _I8[::1]


# Path solvers of ``_solve_block``.
SOLVER_HOMOTOPY = 0
SOLVER_CD = 1
SOLVER_CD_RANDOM = 2

_EVENT_END = 0
_EVENT_ENTER = 1
_EVENT_DROP = 2


@_compiled
def _homotopy(
    Q: np.ndarray,
    q: np.ndarray,
    usable: np.ndarray,
    alphas: np.ndarray,
    n_stop: int,
    max_steps: int,
    coefs: np.ndarray,
) -> tuple[int, bool]:
    """Exact lasso path of (P) evaluated at the first ``n_stop`` grid alphas.

    Parameters
    ----------
    Q : ndarray of shape (p, p)
        Normalised centred Gram (symmetric positive semi-definite).
    q : ndarray of shape (p,)
        Normalised centred ``X'y``.
    usable : ndarray of shape (p,) of bool
        False for columns that are constant on the problem's rows (their
        coefficient stays 0).
    alphas : ndarray of shape (n_alphas,)
        Decreasing grid.
    n_stop : int
        Number of leading grid alphas to evaluate (``1 <= n_stop <= n_alphas``).
    max_steps : int
        Maximum number of homotopy steps (changes of the active set); when a
        further change is due, the path stops there and the remaining grid
        points receive the solution at that alpha.
    coefs : ndarray of shape (n_alphas, p)
        Output; rows ``0 .. n_stop - 1`` are overwritten.

    Returns
    -------
    steps : int
        Homotopy steps taken (``max_steps`` if the path was cut short).
    cut_short : bool
        True if the cap stopped the path before ``alphas[n_stop - 1]``.
    """
    p = Q.shape[0]
    beta = np.zeros(p)
    grad = q.copy()  # q - Q beta, the correlations with the current residual
    chol = np.zeros((p, p))  # lower Cholesky factor of Q[A, A], A in entry order
    active = np.empty(p, dtype=np.int64)
    sign = np.zeros(p)  # sign of each active coefficient, by column
    is_active = np.zeros(p, dtype=np.bool_)
    excluded = ~usable
    z = np.zeros(p)  # chol^{-1} sign[A]
    direction = np.zeros(p)  # d beta[A] / d(-alpha), in active order
    slope = np.zeros(p)  # Q[:, A] @ direction: d grad / d(-alpha)
    n_active = 0

    alpha = 0.0
    entering = -1
    for j in range(p):
        if not excluded[j] and abs(grad[j]) > alpha:
            alpha = abs(grad[j])
            entering = j

    # Grid alphas at or above the path's start have an all-zero solution. The
    # relative slack matters for the refit, whose path starts exactly at the
    # grid's first alpha: computed separately, the two may differ in the last
    # bit, which must not leave coefficients of 1e-17 instead of zeros.
    start = alpha * (1.0 - _SAME_ALPHA)
    grid = 0
    while grid < n_stop and (entering < 0 or alphas[grid] >= start):
        coefs[grid, :] = 0.0
        grid += 1

    steps = 0
    dropped = -1
    while grid < n_stop:
        if entering >= 0:
            j = entering
            # Append column j to the Cholesky factor: solve chol w = Q[A, j].
            row = chol[n_active]
            norm2 = 0.0
            for r in range(n_active):
                acc = Q[j, active[r]]
                for c in range(r):
                    acc -= chol[r, c] * row[c]
                row[r] = acc / chol[r, r]
                norm2 += row[r] * row[r]
            pivot2 = Q[j, j] - norm2
            if pivot2 <= _COLLINEAR * Q[j, j]:
                excluded[j] = True
                for c in range(n_active):
                    row[c] = 0.0
            else:
                row[n_active] = np.sqrt(pivot2)
                active[n_active] = j
                sign[j] = 1.0 if grad[j] > 0 else -1.0
                is_active[j] = True
                acc = sign[j]
                for c in range(n_active):
                    acc -= row[c] * z[c]
                z[n_active] = acc / row[n_active]
                n_active += 1

        # direction solves Q[A, A] direction = sign[A]: back-substitute chol' d = z.
        for r in range(n_active):
            direction[r] = z[r]
        for r in range(n_active - 1, -1, -1):
            direction[r] /= chol[r, r]
            dr = direction[r]
            for c in range(r):
                direction[c] -= chol[r, c] * dr
        slope[:] = 0.0
        for r in range(n_active):
            dr = direction[r]
            qrow = Q[active[r]]
            for j in range(p):
                slope[j] += dr * qrow[j]

        # Next event, as a decrease t of alpha: the last grid alpha needed, an
        # inactive correlation reaching +-alpha, or an active coefficient
        # reaching zero.
        t_next = alpha - alphas[n_stop - 1]
        event = _EVENT_END
        who = -1
        for j in range(p):
            if is_active[j] or excluded[j]:
                continue
            sj = slope[j]
            gj = grad[j]
            # A column just dropped sits on the boundary it left (correlation
            # = sign * alpha); within one linear piece it can only come back
            # on the other side, so its root at t = 0 on the old side is skipped.
            if sj < 1.0 and not (j == dropped and sign[j] > 0):
                t = (alpha - gj) / (1.0 - sj)
                if t < t_next:
                    t_next = t
                    event = _EVENT_ENTER
                    who = j
            if sj > -1.0 and not (j == dropped and sign[j] < 0):
                t = (alpha + gj) / (1.0 + sj)
                if t < t_next:
                    t_next = t
                    event = _EVENT_ENTER
                    who = j
        for r in range(n_active):
            k = active[r]
            if beta[k] * direction[r] < 0.0:
                t = -beta[k] / direction[r]
                if t < t_next:
                    t_next = t
                    event = _EVENT_DROP
                    who = r
        if t_next < 0.0:
            t_next = 0.0  # rounding on a tie: the event is happening now

        # Grid alphas inside this linear piece are exact interpolations.
        new_alpha = alpha - t_next
        while grid < n_stop and (event == _EVENT_END or alphas[grid] >= new_alpha):
            h = alpha - alphas[grid]
            coefs[grid, :] = 0.0
            for r in range(n_active):
                k = active[r]
                coefs[grid, k] = beta[k] + h * direction[r]
            grid += 1
        if event == _EVENT_END:
            break

        for r in range(n_active):
            beta[active[r]] += t_next * direction[r]
        if steps >= max_steps:
            # Another change of the active set would exceed the cap: the
            # remaining grid alphas get the (exact) solution at this alpha.
            if event == _EVENT_DROP:
                beta[active[who]] = 0.0
            while grid < n_stop:
                _copy_row(beta, coefs, grid)
                grid += 1
            return steps, True
        for j in range(p):
            grad[j] -= t_next * slope[j]
        alpha = new_alpha
        steps += 1

        entering = -1
        dropped = -1
        if event == _EVENT_ENTER:
            entering = who
        else:
            k = active[who]
            beta[k] = 0.0
            is_active[k] = False
            dropped = k
            _cholesky_delete(chol, active, n_active, who)
            n_active -= 1
            # Re-solve chol z = sign[A] after the rotation of the factor.
            for r in range(n_active):
                acc = sign[active[r]]
                for c in range(r):
                    acc -= chol[r, c] * z[c]
                z[r] = acc / chol[r, r]
    return steps, False


@_compiled
def _duality_gap(
    w: np.ndarray, alpha: float, Qw: np.ndarray, q: np.ndarray, yy: float, XtA: np.ndarray
) -> tuple[float, float]:
    """Duality gap of (P) at ``w`` and the dual norm, as scikit-learn computes them.

    ``XtA`` receives ``q - Q w`` (the correlations with the residual).
    Returns ``(gap, max_j |XtA_j|)``.
    """
    p = w.shape[0]
    q_dot_w = 0.0
    wQw = 0.0
    l1 = 0.0
    dual_norm = 0.0
    for j in range(p):
        q_dot_w += w[j] * q[j]
        wQw += w[j] * Qw[j]
        l1 += abs(w[j])
        XtA[j] = q[j] - Qw[j]
        if abs(XtA[j]) > dual_norm:
            dual_norm = abs(XtA[j])
    r_norm2 = yy + wQw - 2.0 * q_dot_w
    r_dot_y = yy - q_dot_w
    primal = 0.5 * r_norm2 + alpha * l1
    scale = alpha / dual_norm if dual_norm > alpha else 1.0
    dual = -0.5 * scale * scale * r_norm2 + scale * r_dot_y
    return primal - dual, dual_norm


@_compiled
def _screen(
    Q: np.ndarray,
    w: np.ndarray,
    Qw: np.ndarray,
    XtA: np.ndarray,
    alpha: float,
    gap: float,
    dual_norm: float,
    excluded: np.ndarray,
    active: np.ndarray,
) -> int:
    """Gap-safe screening: drop columns that are provably zero at ``alpha``.

    Columns already in ``excluded`` stay out; a dropped column's coefficient is
    set to 0 (``Qw`` updated). ``active[:n]`` receives the remaining columns in
    order; returns ``n``.
    """
    p = w.shape[0]
    radius = np.sqrt(2.0 * abs(gap)) / alpha
    n_active = 0
    for j in range(p):
        if excluded[j]:
            continue
        d_j = (1.0 - abs(XtA[j] / max(alpha, dual_norm))) / np.sqrt(Q[j, j])
        if d_j <= radius:
            active[n_active] = j
            n_active += 1
        else:
            if w[j] != 0.0:
                wj = w[j]
                Qrow = Q[j]
                for m in range(p):
                    Qw[m] -= wj * Qrow[m]
                w[j] = 0.0
            excluded[j] = True
    return n_active


@_compiled(signature=(_MATRIX, _VECTOR, _F8, _MASK, _F8, _F8, _I8, _B1, _B1, _I8, _VECTOR, _VECTOR))
def _coordinate_descent(
    Q: np.ndarray,
    q: np.ndarray,
    yy: float,
    usable: np.ndarray,
    alpha: float,
    tol: float,
    max_iter: int,
    accept_negative_gap: bool,
    random: bool,
    seed: int,
    w: np.ndarray,
    Qw: np.ndarray,
) -> int:
    """Minimise (P) at one alpha by coordinate descent, from ``w``.

    The same iterations and stopping rule as scikit-learn's coordinate descent
    (``enet_coordinate_descent_gram``, L1 only): sweeps over the columns kept
    by gap-safe screening; after a sweep whose largest update is at most
    ``tol`` times the largest |coefficient|, the duality gap is checked
    against ``tol * yy`` (``yy`` the weighted variance of y: the normalised
    ``y'y`` of the centred problem), and screening is redone if it is larger.
    Reproducing its stopping points matters: near the minimum of the CV curve
    the MSEs of neighbouring alphas differ by less than that tolerance moves
    them.

    With ``random``, a sweep visits as many columns as are kept, drawn with
    replacement, as scikit-learn's ``selection="random"``: its 32-bit xorshift
    generator started at ``seed`` (scikit-learn draws that seed from its
    ``RandomState`` once per call, i.e. per alpha); otherwise in column order.

    ``accept_negative_gap`` selects the before-the-first-sweep test: the Gram
    variant stops there only for ``0 <= gap <= tol``; the variant on rows (the
    final refit of ``LassoCV``) for any ``gap <= tol``.

    ``w`` (start, then solution) and ``Qw`` (equal to ``Q @ w`` on entry) are
    updated in place. Returns the number of sweeps and whether the gap test
    passed (False: ``max_iter`` sweeps without converging, where scikit-learn
    warns).
    """
    p = w.shape[0]
    tol_gap = tol * yy
    XtA = np.empty(p)
    active = np.empty(p, dtype=np.int64)
    excluded = np.zeros(p, dtype=np.bool_)
    for j in range(p):
        if not usable[j]:
            excluded[j] = True
            if w[j] != 0.0:
                wj = w[j]
                for m in range(p):
                    Qw[m] -= wj * Q[j, m]
                w[j] = 0.0

    gap, dual_norm = _duality_gap(w, alpha, Qw, q, yy, XtA)
    if gap <= tol_gap and (accept_negative_gap or gap >= 0.0):
        return 0, True
    n_active = _screen(Q, w, Qw, XtA, alpha, gap, dual_norm, excluded, active)

    state = seed
    n_iter = 0
    converged = False
    for n_iter in range(max_iter):
        w_max = 0.0
        d_w_max = 0.0
        for f in range(n_active):
            if random:
                if state == 0:
                    state = 1
                state ^= (state << 13) & 0xFFFFFFFF
                state ^= state >> 17
                state ^= (state << 5) & 0xFFFFFFFF
                j = active[(state % 2147483648) % n_active]
            else:
                j = active[f]
            w_j = w[j]
            Qrow = Q[j]
            tmp = q[j] - Qw[j] + w_j * Qrow[j]
            magnitude = abs(tmp) - alpha
            if magnitude > 0.0:
                new = (magnitude if tmp > 0.0 else -magnitude) / Qrow[j]
            else:
                new = 0.0
            if new != w_j:
                delta = new - w_j
                for m in range(p):
                    Qw[m] += delta * Qrow[m]
                w[j] = new
            d_w_j = abs(new - w_j)
            if d_w_j > d_w_max:
                d_w_max = d_w_j
            if abs(new) > w_max:
                w_max = abs(new)
        if w_max == 0.0 or d_w_max / w_max <= tol or n_iter == max_iter - 1:
            gap, dual_norm = _duality_gap(w, alpha, Qw, q, yy, XtA)
            if gap <= tol_gap:
                converged = True
                break
            n_active = _screen(Q, w, Qw, XtA, alpha, gap, dual_norm, excluded, active)
    return n_iter + 1, converged


@_compiled
def _copy_row(source: np.ndarray, target: np.ndarray, row: int) -> None:
    """``target[row] = source``, element by element.

    The slice assignment would compile numba's broadcasting checks with their
    formatted error messages: seconds of a first run's compilation for a copy.
    """
    for j in range(source.shape[0]):
        target[row, j] = source[j]


@_compiled
def _cd_path(
    Q: np.ndarray,
    q: np.ndarray,
    yy: float,
    usable: np.ndarray,
    alphas: np.ndarray,
    tol: float,
    max_iter: int,
    random: bool,
    seeds: np.ndarray,
    rows_variant: bool,
    coefs: np.ndarray,
) -> bool:
    """Coordinate-descent lasso path of (P) over the whole grid, warm-started.

    As scikit-learn's ``enet_path``: every alpha starts from the previous
    alpha's solution, the first from zero, and ``Q @ w`` is recomputed at the
    start of every alpha. ``seeds[a]`` seeds the random order at
    ``alphas[a]``. ``rows_variant`` replays the solver scikit-learn uses when
    the training fold has no more rows than terms (coordinate descent on the
    rows instead of the Gram; it differs in the test before the first sweep).
    ``coefs`` (n_alphas, p) receives the solutions. Returns whether every
    alpha converged.
    """
    p = Q.shape[0]
    w = np.zeros(p)
    Qw = np.zeros(p)
    converged = True
    for a in range(alphas.shape[0]):
        Qw[:] = 0.0
        for j in range(p):
            wj = w[j]
            if wj != 0.0:
                Qrow = Q[j]
                for m in range(p):
                    Qw[m] += wj * Qrow[m]
        _, done = _coordinate_descent(
            Q, q, yy, usable, alphas[a], tol, max_iter, rows_variant, random, seeds[a], w, Qw
        )
        converged = converged and done
        _copy_row(w, coefs, a)
    return converged


@_compiled(signature=(_MATRIX, _INDEX, _I8, _I8))
def _cholesky_delete(chol: np.ndarray, active: np.ndarray, n_active: int, pos: int) -> None:
    """Remove position ``pos`` from the active set and its Cholesky factor in place.

    Deleting row ``pos`` of the lower factor leaves a lower-Hessenberg block;
    Givens rotations on column pairs restore the triangle in O(n_active^2).
    """
    for r in range(pos, n_active - 1):
        active[r] = active[r + 1]
        for c in range(r + 2):
            chol[r, c] = chol[r + 1, c]
    for c in range(n_active):
        chol[n_active - 1, c] = 0.0
    for r in range(pos, n_active - 1):
        a = chol[r, r]
        b = chol[r, r + 1]
        rad = np.hypot(a, b)
        if rad == 0.0:
            continue
        cos = a / rad
        sin = b / rad
        for k in range(r, n_active - 1):
            x = chol[k, r]
            y = chol[k, r + 1]
            chol[k, r] = cos * x + sin * y
            chol[k, r + 1] = -sin * x + cos * y
        chol[r, r + 1] = 0.0


@_compiled
def _centred_problem(
    H: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float, float, np.ndarray]:
    """Normalised centred problem (P) from an augmented Gram ``H``.

    Parameters
    ----------
    H : ndarray of shape (p + 2, p + 2)
        Augmented Gram of the problem's rows (see the module docstring).
    scale : ndarray of shape (p,)
        Second moment of every column about the shifted origin over all rows
        of the bootstrap (``H_total[j, j] / H_total[p, p]``), the reference for
        deciding that a column is constant.

    Returns
    -------
    Q : ndarray of shape (p, p)
    q : ndarray of shape (p,)
    yy : float
        Weighted variance of y.
    xbar : ndarray of shape (p,)
        Weighted column means (shifted coordinates).
    ybar : float
    weight : float
        Total weight.
    usable : ndarray of shape (p,) of bool
    """
    p = H.shape[0] - 2
    weight = H[p, p]
    xbar = H[:p, p] / weight
    ybar = H[p, p + 1] / weight
    Q = np.empty((p, p))
    q = np.empty(p)
    usable = np.empty(p, dtype=np.bool_)
    for j in range(p):
        for k in range(p):
            Q[j, k] = H[j, k] / weight - xbar[j] * xbar[k]
        q[j] = H[j, p + 1] / weight - xbar[j] * ybar
        usable[j] = Q[j, j] > _CONSTANT_COLUMN * scale[j]
    yy = H[p + 1, p + 1] / weight - ybar * ybar
    return Q, q, yy, xbar, ybar, weight, usable


@_compiled
def _test_mse(
    coefs: np.ndarray,
    H_test: np.ndarray,
    xbar: np.ndarray,
    ybar: float,
) -> np.ndarray:
    """Weighted test MSE of every grid model fitted on the training rows.

    The prediction of a model is ``ybar + (x - xbar)' beta`` with the training
    means, so the test residual sum of squares is a quadratic form in beta of
    the test statistics re-centred at the training means.

    Parameters
    ----------
    coefs : ndarray of shape (n_alphas, p)
    H_test : ndarray of shape (p + 2, p + 2)
        Augmented Gram of the test rows.
    xbar : ndarray of shape (p,)
    ybar : float
        Training means (shifted coordinates).

    Returns
    -------
    ndarray of shape (n_alphas,)
    """
    p = coefs.shape[1]
    n_alphas = coefs.shape[0]
    weight = H_test[p, p]
    s = H_test[:p, p]
    sy = H_test[p, p + 1]
    # Test statistics about the training means.
    G = np.empty((p, p))
    c = np.empty(p)
    for j in range(p):
        for k in range(p):
            G[j, k] = H_test[j, k] - s[j] * xbar[k] - xbar[j] * s[k] + weight * xbar[j] * xbar[k]
        c[j] = H_test[j, p + 1] - s[j] * ybar - xbar[j] * sy + weight * xbar[j] * ybar
    yy = H_test[p + 1, p + 1] - 2.0 * ybar * sy + weight * ybar * ybar
    out = np.empty(n_alphas)
    Gb = np.empty(p)
    for a in range(n_alphas):
        beta = coefs[a]
        # rss = yy - 2 c'beta + beta'G beta, with G beta accumulated from the
        # rows of the non-zero coefficients only (contiguous, vectorised).
        Gb[:] = 0.0
        rss = yy
        for j in range(p):
            bj = beta[j]
            if bj != 0.0:
                rss -= 2.0 * c[j] * bj
                Grow = G[j]
                for m in range(p):
                    Gb[m] += bj * Grow[m]
        for j in range(p):
            rss += beta[j] * Gb[j]
        out[a] = rss / weight
    return out


@_compiled
def _solve_block(
    H: np.ndarray,
    grids: np.ndarray,
    max_steps: int,
    tol: float,
    solver: int,
    seeds: np.ndarray,
    rows_variant: np.ndarray,
    coef: np.ndarray,
    best: np.ndarray,
    cv_mse: np.ndarray,
    n_iter: np.ndarray,
    capped: np.ndarray,
    r2: np.ndarray,
    xbar: np.ndarray,
    ybar: np.ndarray,
) -> None:
    """Cross-validated lasso of every bootstrap of a block, from its statistics.

    Parameters
    ----------
    H : ndarray of shape (k, n_folds, p + 2, p + 2)
        Augmented Gram of the test rows of each fold, per bootstrap.
    grids : ndarray of shape (k, n_alphas)
        Alpha grid of each bootstrap (decreasing).
    max_steps : int
        Cap on homotopy steps per path, or on coordinate-descent sweeps per
        alpha.
    tol : float
        Coordinate-descent tolerance (``SOLVER_CD`` only).
    solver : int
        ``SOLVER_HOMOTOPY``, ``SOLVER_CD`` (cyclic) or ``SOLVER_CD_RANDOM``.
    seeds : ndarray of shape (k, n_alphas) of int
        Per bootstrap, the seed of the random coordinate order at each grid
        alpha of a fold path; the refit uses ``seeds[b, 0]``
        (``SOLVER_CD_RANDOM`` only).
    rows_variant : ndarray of shape (k, n_folds) of bool
        Per bootstrap and fold, whether scikit-learn fits that fold's path by
        coordinate descent on the rows (training rows, zero weights included,
        at most ``p``) rather than on the Gram (``SOLVER_CD*`` only).
    coef : ndarray of shape (k, p)
        Output: refit coefficients at the chosen alpha.
    best : ndarray of shape (k,) of int
        Output: index of the chosen alpha in the grid.
    cv_mse : ndarray of shape (k,)
        Output: mean over folds of the weighted test MSE at the chosen alpha.
    n_iter : ndarray of shape (k,) of int
        Output: homotopy steps of the refit path down to the chosen alpha
        (``SOLVER_HOMOTOPY``), or coordinate-descent sweeps of the refit.
    capped : ndarray of shape (k,) of bool
        Output: ``max_steps`` stopped a path of the bootstrap (a fold path or
        the refit) early: a homotopy path cut short, or coordinate descent
        that did not converge at some alpha.
    r2 : ndarray of shape (k,)
        Output: weighted in-sample R^2 of the refit.
    xbar : ndarray of shape (k, p)
        Output: weighted column means over all rows (shifted coordinates).
    ybar : ndarray of shape (k,)
        Output: weighted mean of y (shifted coordinates).
    """
    k, n_folds = H.shape[0], H.shape[1]
    p = H.shape[2] - 2
    n_alphas = grids.shape[1]
    coefs = np.empty((n_alphas, p))
    random = solver == SOLVER_CD_RANDOM
    for b in range(k):
        stopped = False
        total = H[b, 0].copy()
        for f in range(1, n_folds):
            total += H[b, f]
        scale = np.empty(p)
        for j in range(p):
            scale[j] = total[j, j] / total[p, p]
        alphas = grids[b]

        mse_sum = np.zeros(n_alphas)
        n_used = 0
        for f in range(n_folds):
            test = H[b, f]
            if test[p, p] <= 0.0 or total[p, p] - test[p, p] <= 0.0:
                continue  # a fold without test (or training) weight has no MSE
            Q, q, yy, xb, yb, _, usable = _centred_problem(total - test, scale)
            if solver != SOLVER_HOMOTOPY:
                done = _cd_path(
                    Q,
                    q,
                    yy,
                    usable,
                    alphas,
                    tol,
                    max_steps,
                    random,
                    seeds[b],
                    rows_variant[b, f],
                    coefs,
                )
                stopped = stopped or not done
            else:
                _, cut_short = _homotopy(Q, q, usable, alphas, n_alphas, max_steps, coefs)
                stopped = stopped or cut_short
            mse_sum += _test_mse(coefs, test, xb, yb)
            n_used += 1

        # First minimum of the mean MSE, like numpy.argmin in LassoCV.
        i_best = 0
        for a in range(1, n_alphas):
            if mse_sum[a] < mse_sum[i_best]:
                i_best = a
        best[b] = i_best
        cv_mse[b] = mse_sum[i_best] / n_used if n_used > 0 else np.nan

        Q, q, yy, xb, yb, _, usable = _centred_problem(total, scale)
        if solver != SOLVER_HOMOTOPY:
            beta = np.zeros(p)
            n_iter[b], done = _coordinate_descent(
                Q,
                q,
                yy,
                usable,
                alphas[i_best],
                tol,
                max_steps,
                True,
                random,
                seeds[b, 0],
                beta,
                np.zeros(p),
            )
            stopped = stopped or not done
        else:
            n_iter[b], cut_short = _homotopy(Q, q, usable, alphas, i_best + 1, max_steps, coefs)
            stopped = stopped or cut_short
            beta = coefs[i_best]
        capped[b] = stopped
        _copy_row(beta, coef, b)
        _copy_row(xb, xbar, b)
        ybar[b] = yb

        # Weighted residual variance: yy - 2 q'beta + beta'Q beta.
        rss = yy
        for j in range(p):
            if beta[j] != 0.0:
                acc = -2.0 * q[j]
                for m in range(p):
                    acc += Q[j, m] * beta[m]
                rss += beta[j] * acc
        # A constant y (variance at rounding level): the constant prediction is
        # exact, scored like scikit-learn scores a perfect prediction.
        if yy <= _CONSTANT_COLUMN * total[p + 1, p + 1] / total[p, p]:
            r2[b] = 1.0
        else:
            r2[b] = 1.0 - max(rss, 0.0) / yy


@_compiled
def _gram(part: np.ndarray, out: np.ndarray) -> None:
    """``out = part.T @ part``, summed in an order that no CPU changes.

    BLAS picks its kernel (vector width, fused multiply-add, blocking) by CPU,
    so its Gram differs in the last bits between CPU generations. Here every
    entry is accumulated over blocks of four rows in row order, each block as
    ``((a0 b0 + a1 b1) + (a2 b2 + a3 b3))``: vectorised across the columns of
    ``out``, never across rows, so every build rounds the same operations.

    Parameters
    ----------
    part : ndarray of shape (n, m)
    out : ndarray of shape (m, m)
        Overwritten (symmetric).
    """
    n, m = part.shape
    out[:, :] = 0.0
    r = 0
    while r + 4 <= n:
        a0 = part[r]
        a1 = part[r + 1]
        a2 = part[r + 2]
        a3 = part[r + 3]
        j = 0
        while j < m:
            # Two rows of ``out`` at once share the loads of the four data rows.
            x0, x1, x2, x3 = a0[j], a1[j], a2[j], a3[j]
            row = out[j]
            row[j] += (x0 * x0 + x1 * x1) + (x2 * x2 + x3 * x3)
            if j + 1 == m:
                break
            y0, y1, y2, y3 = a0[j + 1], a1[j + 1], a2[j + 1], a3[j + 1]
            # Slices indexed from 0: LLVM then vectorises the loop (with
            # ``range(j + 1, m)`` it kept the index checks and stayed scalar).
            s = j + 1
            tail, tail_next = out[j, s:], out[s, s:]
            b0s, b1s, b2s, b3s = a0[s:], a1[s:], a2[s:], a3[s:]
            for k in range(m - s):
                b0, b1, b2, b3 = b0s[k], b1s[k], b2s[k], b3s[k]
                tail[k] += (x0 * b0 + x1 * b1) + (x2 * b2 + x3 * b3)
                tail_next[k] += (y0 * b0 + y1 * b1) + (y2 * b2 + y3 * b3)
            j += 2
        r += 4
    while r < n:
        a0 = part[r]
        for j in range(m):
            x0 = a0[j]
            row = out[j]
            for k in range(j, m):
                row[k] += x0 * a0[k]
        r += 1
    for j in range(m):
        for k in range(j):
            out[j, k] = out[k, j]


@_compiled
def _gather_scaled(
    A: np.ndarray, weights: np.ndarray, labels: np.ndarray, n_folds: int, out: np.ndarray
) -> np.ndarray:
    """Copy the rows of non-zero weight, scaled by sqrt(weight), grouped by fold.

    Parameters
    ----------
    A : ndarray of shape (n_samples, m)
        Augmented columns.
    weights : ndarray of shape (n_samples,)
    labels : ndarray of shape (n_samples,)
        Test-fold label of every row.
    n_folds : int
    out : ndarray of shape (n_samples, m)
        Work buffer; its first ``counts.sum()`` rows are overwritten, fold 0's
        rows first, then fold 1's, and so on, each in row order.

    Returns
    -------
    counts : ndarray of shape (n_folds,) of int
        Number of rows of non-zero weight in each fold.
    """
    n, m = A.shape
    counts = np.zeros(n_folds, dtype=np.int64)
    for i in range(n):
        if weights[i] != 0.0:
            counts[labels[i]] += 1
    position = np.zeros(n_folds, dtype=np.int64)
    for f in range(1, n_folds):
        position[f] = position[f - 1] + counts[f - 1]
    for i in range(n):
        w = weights[i]
        if w != 0.0:
            f = labels[i]
            r = position[f]
            position[f] += 1
            s = np.sqrt(w)
            for j in range(m):
                out[r, j] = A[i, j] * s
    return counts
