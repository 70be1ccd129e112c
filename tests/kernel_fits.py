"""A script that fits both ``gram`` solvers on small yeast-like problems and saves every result.

Run in fresh interpreters by the tests that compare kernels compiled or loaded in different
ways (another CPU, a built package): ``python script.py OUT.npz``.
"""

FIT_SCRIPT = """
import sys
import numpy as np
from tfbp_dask import datagen, resampling
from tfbp_dask.engines import LassoParams, gram

arrays = {}
for n_genes, n_tfs, solver in [(600, 13, "cd"), (700, 71, "homotopy")]:
    data = datagen.make_dataset(n_genes=n_genes, n_tfs=n_tfs, n_partners=6, effect=0.3, seed=5)
    binding = data.predictors.iloc[:, 1:].to_numpy()
    X = binding[:, :1] * binding[:, 1:]
    y = data.response.iloc[:, 1].to_numpy()
    classes = resampling.stratification_classes(binding[:, 0], (0, 8, 12, np.inf))
    bootstrap = np.arange(4)
    weights = resampling.draws_to_weights(resampling.bootstrap_draws(n_genes, 4, 6))
    folds = resampling.bootstrap_test_folds(classes, bootstrap)
    fits = gram.fit_bootstraps(X, y, bootstrap, weights, folds, LassoParams(), solver=solver)
    for name in ("coef", "intercept", "alpha", "cv_mse", "r2", "n_iter"):
        arrays[f"{solver}_{name}"] = getattr(fits, name)
np.savez(sys.argv[1], **arrays)
"""
