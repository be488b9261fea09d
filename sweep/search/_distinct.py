"""A sampler wrapper that does not train the same configuration twice in a finite space.

Every trial of a study trains with the study seed, so a configuration that already completed (or
failed, or is running on another worker) would only reproduce its result. Model-based samplers
propose such repeats often once the space is small and discrete: TPE keeps drawing from the same
few good points (optuna/optuna#2021). Where every searched parameter takes finitely many values,
`DistinctSampler` asks the wrapped sampler again when it proposes a configuration already tried,
and after a few refusals takes an untried one at random. Pruned configurations may be proposed
again: Hyperband can put the repeat in a bracket that lets it train longer. Re-running the top
configurations with new seeds is `sweep confirm`'s job.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sweep.storage import study_trials

logger = logging.getLogger(__name__)

# A configuration in one of these states has been (or is being) trained with the study seed.
_TRIED_STATES = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
# How often the wrapped sampler is asked again before an untried point is drawn at random.
_ASK_AGAIN = 8
# Spaces up to this size are enumerated to draw an untried point; larger ones are sampled.
_ENUMERATE_UP_TO = 100_000
_RANDOM_DRAWS = 1_000


class DistinctSampler(BaseSampler):
    """Wraps `inner` so that no configuration of a finite space is proposed twice while an
    untried one is left.

    `distributions` are the searched parameters' Optuna distributions and `values` every value
    each of them takes (sweep.search.space.finite_space).
    """

    def __init__(
        self,
        inner: BaseSampler,
        distributions: dict[str, BaseDistribution],
        values: dict[str, list[Any]],
        seed: int | None = None,
    ):
        if set(distributions) != set(values):
            raise ValueError("distributions and values must name the same parameters")
        self._inner = inner
        self._distributions = dict(distributions)
        self._names = sorted(values)
        self._values = {name: list(values[name]) for name in self._names}
        self._size = int(np.prod([len(v) for v in self._values.values()]))
        self._rng = np.random.RandomState(seed)
        self._warned_exhausted = False

    @property
    def inner(self) -> BaseSampler:
        """The wrapped sampler."""
        return self._inner

    def __str__(self) -> str:
        return f"{self.__class__.__name__}({self._inner})"

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._rng.seed()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # The whole space is sampled here (relatively), so that a proposal can be checked as a
        # whole before any parameter is suggested.
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:
            # An enqueued or retried trial has its parameters (or some of them) already: the
            # wrapped sampler fills in the rest as it would without this wrapper.
            return self._inner_relative(study, trial)
        tried = {
            self._key(t.params)
            for t in study_trials(study, _TRIED_STATES)
            if t.number != trial.number and set(t.params) >= set(self._names)
        }
        proposal: dict[str, Any] = {}
        for _ in range(_ASK_AGAIN):
            proposal = self._propose(study, trial)
            if self._key(proposal) not in tried:
                return proposal
        untried = self._draw_untried(tried)
        if untried is not None:
            return untried
        if not self._warned_exhausted:
            self._warned_exhausted = True
            logger.warning(
                "all %d configurations of the search space have been tried: trials from now on"
                " repeat one (with the study seed they repeat its result)",
                self._size,
            )
        return proposal

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """What the wrapped sampler would run: its relative sample, completed by its independent
        samples for the parameters that the relative one left out (all of them at first)."""
        proposal = self._inner_relative(study, trial)
        for name in self._names:
            if name not in proposal:
                proposal[name] = self._inner.sample_independent(
                    study, trial, name, self._distributions[name]
                )
        return proposal

    def _inner_relative(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """The wrapped sampler's relative sample over its own relative search space."""
        inner_space = self._inner.infer_relative_search_space(study, trial)
        return self._inner.sample_relative(study, trial, inner_space) if inner_space else {}

    def _key(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params.get(name) for name in self._names)

    def _draw_untried(self, tried: set[tuple[Any, ...]]) -> dict[str, Any] | None:
        """A configuration not in `tried`, uniformly at random; None when none is left."""
        if len(tried) >= self._size:
            return None
        if self._size <= _ENUMERATE_UP_TO:
            untried = [
                point
                for point in itertools.product(*(self._values[n] for n in self._names))
                if point not in tried
            ]
            return dict(zip(self._names, untried[self._rng.randint(len(untried))], strict=True))
        for _ in range(_RANDOM_DRAWS):
            point = tuple(
                self._values[n][self._rng.randint(len(self._values[n]))] for n in self._names
            )
            if point not in tried:
                return dict(zip(self._names, point, strict=True))
        return None
