"""Which path solver the ``gram`` engine runs on a design (no numba: the client asks too)."""

from __future__ import annotations

# Designs of at most this many terms get ``cd`` (scikit-learn's coordinate descent
# replayed), wider ones the exact ``homotopy`` path.
CD_MAX_TERMS = 50


def solver_name(n_terms: int, solver: str = "auto") -> str:
    """The path solver ``gram.fit_bootstraps`` runs on a design of ``n_terms`` terms.

    ``"auto"`` is ``"cd"`` for at most ``CD_MAX_TERMS`` terms, else ``"homotopy"``.
    """
    if solver == "auto":
        return "cd" if n_terms <= CD_MAX_TERMS else "homotopy"
    return solver
