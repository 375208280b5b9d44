"""Program search (issue 19), its foundation: AutoML-Zero-style typed register programs.

:class:`Program` (components of int32 ``[L, 4]`` instructions over scalar, vector and matrix
registers), its validation, canonical form (dead code removed, registers renamed) and printer;
:func:`pack` batches programs for the native interpreter (:mod:`evoforge.interpreter`);
:data:`OPS` is the op table. :func:`mutate` (AutoML-Zero's mutations), :func:`mutate_until_different`
and :func:`random_program` make new programs; :class:`ProgramCache` looks fitnesses up by the structural
digest of the canonical form, then by the functional digest of the outputs on probe inputs.

AutoNumerics-Zero's task (:mod:`evoforge.programs.elementary`): :data:`TARGETS` (``exp2``, ``log2``),
:func:`ulp_error` against a float64 reference on :func:`probe_points`, :func:`op_count`, and the baseline:
:func:`minimax_polynomial` (Remez) run as :func:`horner_program`, tabulated by :func:`minimax_baseline`.

Lion's task (:mod:`evoforge.programs.update_rules`): :class:`UpdateRuleTask` scores optimizer update rules
(function programs over per-parameter :data:`FEATURES`, read with ``v_get``) by training logistic
regressions and MLPs on scikit-learn's digits; :func:`adamw_program` and :func:`lion_program` are the
baselines.

Searches: :class:`RegularizedEvolution` (one objective; aging and tournaments) and :class:`ProgramNSGA2`
(several) evaluate through the two-level cache, checkpoint and resume, and run on any backend; the
tasks :class:`FunctionTask` (AutoNumerics-Zero: ULP error and op count, constants fitted by CMA-ES,
started from :func:`taylor_program`) and :class:`LearnerTask` (AutoML-Zero: linear regression,
projected binary classification); :func:`search_programs` runs a task by name into a run directory
(what ``evoforge programs NAME`` does).
"""

from __future__ import annotations

from .cache import DEFAULT_QUANTISE, ProgramCache, ProgramKey, functional_digest, structural_digest
from .elementary import (TARGETS, horner_program, minimax_baseline, minimax_polynomial, op_count, probe_points,
                         ulp_error)
from .mutation import MUTATION_KINDS, mutate, mutate_until_different, random_program
from .ops import OP_IDS, OPS, OpSpec, op_id
from .program import FUNCTION, LEARNER, Program, assemble, format_instruction, pack
from .update_rules import FEATURES, PROBLEMS, RULE_OPS, UpdateRuleTask, adamw_program, lion_program
from .engine import ProgramTask
from .function_task import ARITHMETIC, WORST, FunctionTask, taylor_program
from .learner_task import LEARNER_OPS, LearnerTask, linear_regression_program
from .nsga2 import ProgramNSGA2
from .regularized import RegularizedEvolution
from .run import TASKS, ProgramRun, search_programs

__all__ = ["FUNCTION", "LEARNER", "OPS", "OP_IDS", "OpSpec", "Program", "assemble", "format_instruction", "op_id",
           "pack", "MUTATION_KINDS", "mutate", "mutate_until_different", "random_program", "DEFAULT_QUANTISE",
           "ProgramCache", "ProgramKey", "functional_digest", "structural_digest", "TARGETS", "ulp_error",
           "probe_points", "minimax_polynomial", "horner_program", "op_count", "minimax_baseline", "UpdateRuleTask",
           "adamw_program", "lion_program", "FEATURES", "RULE_OPS", "PROBLEMS", "ProgramTask", "RegularizedEvolution",
           "ProgramNSGA2", "FunctionTask", "taylor_program", "ARITHMETIC", "WORST", "LearnerTask",
           "linear_regression_program", "LEARNER_OPS", "TASKS", "ProgramRun", "search_programs"]
