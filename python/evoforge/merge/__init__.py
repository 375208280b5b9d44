"""Evolutionary model merging: merge recipes (linear, task arithmetic, TIES, DARE, SLERP; per layer
group weights and densities) found by CMA-ES or NSGA-II, and data-flow paths through the models'
blocks found by evolution; every candidate merged into the resident model in place, never written
to disk.

    from evoforge.merge import MergeConfig, Task, merge

    res = merge("base/", ["expert_a/", "expert_b/"],
                [Task("shakespeare", text="a.txt"), Task("wiki", text="b.txt")],
                MergeConfig(method="ties", evaluations=200, run_dir="runs/m"))
    print(res.table())            # held-out loss of base, experts, best uniform recipe, evolved
"""

from .config import MergeConfig
from .experts import finetune
from .merger import Merger
from .recipe import METHODS, Recipe
from .result import MergeResult, load_recipe
from .run import merge
from .tasks import Task

__all__ = ["MergeConfig", "MergeResult", "Merger", "METHODS", "Recipe", "Task", "finetune", "load_recipe", "merge"]
