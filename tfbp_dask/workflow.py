"""The stages of one TF's run and the decisions between them (SPEC §5–§8).

The workflow draws the bootstraps, hands the fits to the
executor, judges significance and chooses what the next stage models. It
writes no files: a ``StageListener`` is told about every finished stage.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from . import compat, stats
from .config import WorkflowConfig, format_bins
from .design import Term, design_matrix, stage1_terms, top_n_rows
from .engines import BootstrapFits, LassoParams, solver_note, solver_of
from .errors import InputError
from .inputs import CheckedRows, ModelingData
from .interactors import InteractorResult, evaluate_interactors
from .resampling import N_FOLDS, stratification_classes, stratification_problem

logger = logging.getLogger(__name__)

TOPN_SEED_OFFSET = 10
MAX_SEED = 2**32 - 1 - TOPN_SEED_OFFSET


class BootstrapFitter(Protocol):
    """What the workflow needs from an executor."""

    def draw(self, n_samples: int, n_bootstraps: int, seed: int) -> Any:
        """A stage's draws (``resampling.bootstrap_draws``), made where the fits run."""
        ...

    def design(
        self,
        rows: CheckedRows,
        columns: list[str],
        perturbed_tf: str,
        terms: list[Term],
        scale_by_std: bool,
    ) -> Any:
        """``design_matrix`` of ``terms`` on a batch's checked rows, made where the fits run."""
        ...

    def fit_bootstraps(
        self,
        label: str,
        engine: str,
        X: np.ndarray,
        y: np.ndarray,
        draws: Any,
        normalize_weights: bool,
        classes: np.ndarray,
        params: LassoParams,
        chunk_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        completed: BootstrapFits | None = None,
        on_chunk: Callable[[BootstrapFits], None] | None = None,
        store: Callable[[BootstrapFits], None] | None = None,
    ) -> BootstrapFits: ...


@dataclass
class DropoutRound:
    """One round of ``--iterative_dropout``: terms in, level, terms kept."""

    round: int
    ci_level: float
    terms_in: list[str]
    terms_kept: list[str]


@dataclass
class StageResult:
    """A finished bootstrap stage.

    Attributes
    ----------
    name : str
        ``all_data`` or ``topn``.
    terms : list of Term
        The terms of the final fits, in design order.
    rows : Index
        Feature ids modelled.
    seed : int
    ci_level : float
    fits : BootstrapFits
    draws : array-like of shape (n_bootstraps, n_rows)
        Row positions of every bootstrap draw (``np.asarray(draws)``: an executor's
        ``ClusterDraws`` are gathered, or made again from the seed).
    confidence : DataFrame
        ``term, ci_level, lower, upper, significant``.
    importance : DataFrame
        See ``stats.feature_importance``.
    dropout_rounds : list of DropoutRound
        Only with ``--iterative_dropout`` in stage 1.
    wall_seconds : float
    solver : str
        Path solver of the final fits (see ``engines.solver_of``).
    solver_note : str or None
        Why that solver's numbers may differ from scikit-learn's by more than
        rounding in this installation (``engines.solver_note``).
    """

    name: str
    terms: list[Term]
    rows: pd.Index
    seed: int
    ci_level: float
    fits: BootstrapFits
    draws: Any
    confidence: pd.DataFrame
    importance: pd.DataFrame
    dropout_rounds: list[DropoutRound] = field(default_factory=list)
    wall_seconds: float = 0.0
    solver: str = ""
    solver_note: str | None = None

    @property
    def significant_terms(self) -> list[Term]:
        """Significant terms, in design order."""
        flags = dict(zip(self.confidence["term"], self.confidence["significant"]))
        return [term for term in self.terms if flags.get(term.name, False)]


@dataclass
class WorkflowResult:
    """Everything one TF's run produced, stage by stage (None where not reached)."""

    config: WorkflowConfig
    data: ModelingData
    seed: int
    stage1_terms: list[Term]
    all_data: StageResult | None = None
    topn: StageResult | None = None
    interactors: InteractorResult | None = None
    outcome: str = "completed"
    stage_seconds: dict[str, float] = field(default_factory=dict)


class StageListener(Protocol):
    """Told about progress, fitted chunks and finished stages (to show, checkpoint, write).

    ``completed(label)`` returns the bootstraps of a fit already checkpointed
    (a resumed run) or None; ``chunk_done(label, fits)`` receives every newly
    fitted chunk; ``chunk_store(label)`` is None, or a picklable function that
    checkpoints a chunk where it was fitted (then ``chunk_done`` need not).
    Labels name a fit within the TF's run (``all_data``, ``all_data-round2``,
    ``topn``).
    """

    def progress(self, stage: str, done: int, total: int) -> None: ...

    def completed(self, label: str) -> BootstrapFits | None: ...

    def chunk_done(self, label: str, fits: BootstrapFits) -> None: ...

    def chunk_store(self, label: str) -> Callable[[BootstrapFits], None] | None: ...

    def stage_done(self, result: WorkflowResult, stage: str) -> None: ...


def choose_seed(random_state: int | None) -> int:
    """The user's seed, or a fresh one from OS entropy (recorded so it can be reused)."""
    if random_state is not None:
        return int(random_state)
    return secrets.randbelow(MAX_SEED + 1)


def check_folds(config: WorkflowConfig, data: ModelingData) -> None:
    """Fail before any fit if a stage's rows cannot be split into stratified folds.

    Stage 1 (and stage 4 without ``--stage4_topn``) models every row, the
    top-N stage (and stage 4 with it) the top-N rows; both row sets are known
    from the inputs alone.

    Raises
    ------
    InputError
        One line naming the stage, ``--bins`` and the largest bin's count.
    """
    ptf = data.perturbed_tf
    binding = data.predictors[ptf]
    topn = top_n_rows(binding, config.top_n)
    stages = [("all-data stage", binding.to_numpy(), "", compat.stage1_bins(config))]
    if len(topn) >= N_FOLDS:  # fewer top-N rows end the run normally at stage 2
        top = binding.loc[topn].to_numpy()
        stages.append(("top-N stage", top, f", --top_n {config.top_n}", compat.topn_bins(config)))
        if compat.stage4_uses_topn(config) and compat.stage4_bins(config) != stages[-1][3]:
            stages.append(
                ("interactor stage", top, f", --top_n {config.top_n}", compat.stage4_bins(config))
            )
    for stage, values, option, bins in stages:
        classes = stratification_classes(values, bins)
        problem = stratification_problem(classes, bins)
        if problem is not None:
            raise InputError(
                f"{ptf}: the {stage} ({len(values)} rows{option}, "
                f"--bins {format_bins(bins)}): {problem}"
            )


def run_workflow(
    config: WorkflowConfig,
    data: ModelingData,
    fitter: BootstrapFitter,
    listener: StageListener,
    seed: int,
) -> WorkflowResult:
    """Run the stages of one TF; stop normally when a stage finds nothing significant."""
    ptf = data.perturbed_tf
    terms = stage1_terms(
        ptf,
        list(data.predictors.columns),
        ptf_main_effect=config.ptf_main_effect,
        exclude_interactor_variables=config.exclude_interactor_variables,
        exclude_all_interactors=config.exclude_all_interactors,
        squared_pTF=config.squared_pTF,
        cubic_pTF=config.cubic_pTF,
        row_max=config.row_max,
        add_model_variables=config.add_model_variables,
    )
    result = WorkflowResult(config=config, data=data, seed=seed, stage1_terms=terms)
    if not terms:
        result.outcome = "stopped at stage 1: the model has no terms (all interactors excluded)"
        return result
    logger.info(
        "%s: %d modeled features, %d stage-1 terms, seed %d",
        ptf,
        len(data.response),
        len(terms),
        seed,
    )

    started = time.perf_counter()
    result.all_data = _bootstrap_stage(
        "all_data",
        config,
        data,
        data.response.index,
        terms,
        seed,
        config.all_data_ci_level,
        fitter,
        listener,
        iterative=config.iterative_dropout,
        bins=compat.stage1_bins(config),
    )
    result.stage_seconds["all_data"] = time.perf_counter() - started
    listener.stage_done(result, "all_data")
    significant = result.all_data.significant_terms
    logger.info("%s: all-data stage: %d significant terms", ptf, len(significant))
    if not significant:
        result.outcome = (
            f"stopped at stage 1: no term significant at {config.all_data_ci_level}% CI"
        )
        return result

    started = time.perf_counter()
    rows = top_n_rows(data.predictors[ptf], config.top_n)
    if len(rows) < N_FOLDS:
        result.outcome = (
            f"stopped at stage 2: only {len(rows)} top-N rows, "
            f"{N_FOLDS} needed for cross-validation"
        )
        return result
    result.topn = _bootstrap_stage(
        "topn",
        config,
        data,
        rows,
        significant,
        compat.topn_seed(config, seed),
        config.topn_ci_level,
        fitter,
        listener,
        bins=compat.topn_bins(config),
    )
    result.stage_seconds["topn"] = time.perf_counter() - started
    listener.stage_done(result, "topn")
    significant = result.topn.significant_terms
    logger.info("%s: top-N stage (%d rows): %d significant terms", ptf, len(rows), len(significant))
    if not significant:
        result.outcome = f"stopped at stage 2: no term significant at {config.topn_ci_level}% CI"
        return result

    started = time.perf_counter()
    stage4_rows = rows if compat.stage4_uses_topn(config) else data.response.index
    result.interactors = evaluate_interactors(
        data.predictors.loc[stage4_rows],
        data.response.loc[stage4_rows],
        ptf,
        significant,
        compat.stage4_bins(config),
        scale_by_std=compat.stage4_scale_by_std(config),
        lasso=config.stage4_lasso,
        max_iter=config.max_iter,
        **compat.stage4_options(config),
    )
    result.stage_seconds["interactors"] = time.perf_counter() - started
    listener.stage_done(result, "interactors")
    return result


def _bootstrap_stage(
    name: str,
    config: WorkflowConfig,
    data: ModelingData,
    rows: pd.Index,
    terms: Sequence[Term],
    seed: int,
    ci_level: float,
    fitter: BootstrapFitter,
    listener: StageListener,
    iterative: bool = False,
    bins: Sequence[float] | None = None,
) -> StageResult:
    """Draw, fit and judge one bootstrap stage on ``rows`` with ``terms`` (``bins``:
    the stage's stratification bins, ``--bins`` when None)."""
    started = time.perf_counter()
    ptf = data.perturbed_tf
    every_row = rows is data.response.index and rows is data.predictors.index
    predictors = data.predictors if every_row else data.predictors.loc[rows]
    y = (data.response if every_row else data.response.loc[rows]).to_numpy(dtype=float)
    classes = stratification_classes(
        predictors[ptf].to_numpy(), config.bins if bins is None else bins
    )
    draws = fitter.draw(len(rows), config.n_bootstraps, seed)  # made on the cluster
    params = LassoParams(max_iter=config.max_iter)

    stopped: list[tuple[str, int]] = []  # (solver, fits cut at --max_iter) of every fit

    def fit(current: Sequence[Term], label: str) -> BootstrapFits:
        if every_row and data.rows is not None and _same_bits_anywhere(current, config):
            # The cluster holds the batch's predictors: it makes the matrix, the client
            # sends the rows to keep (not 6000 x 150 values per TF).
            columns = [str(column) for column in predictors.columns]
            X = fitter.design(data.rows, columns, ptf, list(current), config.scale_by_std)
        else:
            X = design_matrix(predictors, ptf, current, config.scale_by_std)
        fits = fitter.fit_bootstraps(
            f"{ptf}-{label}",
            config.engine,
            X,
            y,
            draws,
            config.normalize_sample_weights,
            classes,
            params,
            config.chunk_size,
            progress=lambda done, total: listener.progress(label, done, total),
            completed=listener.completed(label),
            on_chunk=lambda part: listener.chunk_done(label, part),
            store=listener.chunk_store(label),
        )
        stopped.append((solver_of(config.engine, len(current)), int(fits.max_iter_reached.sum())))
        return fits

    current = list(terms)
    rounds: list[DropoutRound] = []
    if iterative:
        current, fits = _iterative_dropout(config, current, fit, rounds)
    else:
        fits = fit(current, name)
    _warn_max_iter(f"{ptf}: {name} stage", stopped, config.n_bootstraps, config.max_iter)
    solver = solver_of(config.engine, len(current))
    note = solver_note(solver)
    if note is not None:
        logger.warning("%s: %s stage: %s", ptf, name, note)
    names = [term.name for term in current]
    confidence = stats.confidence_table(fits.coef, names, ci_level)
    importance = stats.feature_importance(fits.coef, names, ci_level, confidence)
    return StageResult(
        name=name,
        terms=current,
        rows=rows,
        seed=seed,
        ci_level=ci_level,
        fits=fits,
        draws=draws,
        confidence=confidence,
        importance=importance,
        dropout_rounds=rounds,
        wall_seconds=time.perf_counter() - started,
        solver=solver,
        solver_note=note,
    )


def _same_bits_anywhere(terms: Sequence[Term], config: WorkflowConfig) -> bool:
    """True when ``design_matrix`` gives the same bits on any CPU (products, copies, maxima).

    A power above 2 goes through ``pow``, which numpy may vectorise differently on
    another CPU, and ``--scale_by_std`` reduces columns: such matrices are made here.
    """
    if config.scale_by_std:
        return False
    return all(term.kind != "power" or term.power == 2 for term in terms)


def _warn_max_iter(
    where: str, stopped: Sequence[tuple[str, int]], n_bootstraps: int, max_iter: int
) -> None:
    """One warning for a stage whose fits (over all its rounds) hit ``--max_iter``."""
    n_stopped = sum(count for _, count in stopped)
    if n_stopped == 0:
        return
    solvers = sorted({solver for solver, count in stopped if count})
    what = {
        "sklearn_cd": "coordinate descent stopped at --max_iter sweeps without converging",
        "gram_cd": "coordinate descent stopped at --max_iter sweeps without converging",
        "gram_homotopy": "the lasso path was cut short after --max_iter homotopy steps",
    }
    logger.warning(
        "%s: %d of %d bootstrap fits reached --max_iter %d (%s); see max_iter_reached "
        "in model_statistics",
        where,
        n_stopped,
        n_bootstraps * len(stopped),
        max_iter,
        "; ".join(f"{solver}: {what[solver]}" for solver in solvers),
    )


def _iterative_dropout(
    config: WorkflowConfig,
    terms: list[Term],
    fit: Callable[[Sequence[Term], str], BootstrapFits],
    rounds: list[DropoutRound],
) -> tuple[list[Term], BootstrapFits]:
    """Refit with the same draws, keeping the significant terms at a rising CI level
    (fixed at the start level under ``--compat tfbpmodeling``).

    Stops when a round after the first keeps as many terms as it was given;
    that round's fits are the stage's fits. A round that keeps nothing ends the
    stage there, with no significant term.
    """
    current = terms
    round_number = 0
    while True:
        level = compat.dropout_level(config, round_number)
        fits = fit(current, f"all_data-round{round_number}")
        lower, upper = stats.percentile_ci(fits.coef, level)
        keep = stats.significant_mask(lower, upper)
        kept = [term for term, flag in zip(current, keep) if flag]
        rounds.append(
            DropoutRound(round_number, level, [t.name for t in current], [t.name for t in kept])
        )
        logger.info(
            "iterative dropout round %d at %.1f%% CI: kept %d of %d terms",
            round_number,
            level,
            len(kept),
            len(current),
        )
        # With nothing kept, judging this round at the (higher) final level keeps
        # nothing either: percentile intervals only widen as the level rises.
        if not kept or (round_number > 0 and len(kept) == len(current)):
            return current, fits
        current = kept
        round_number += 1
