"""Studies: experiments that run explainers and score them with metrics.

Metrics (:mod:`unmask.metrics`) score given maps and never run an explainer; a study may run
explainers, re-run them under other settings or on randomised models, and combine metrics:

- :mod:`~unmask.studies.robustness`: the mean pairwise similarity of an explainer's maps over
  hyperparameter settings or seeds (seed 001, Sec. 4.4);
- :mod:`~unmask.studies.sanity`: cascading and independent model randomisation (Adebayo et al.
  2018);
- :mod:`~unmask.studies.filling`: which removal really removes an object (seed 001, Table 1);
- :mod:`~unmask.studies.figure4`: CP scores against the hallucination score (Kolek et al. 2023,
  Figure 4), run by ``unmask figure4``.
"""

from .filling import filling_study, format_filling_table, ms_ssim
from .robustness import RobustnessResult, robustness
from .sanity import (
    SanityResult,
    cascading_randomisation,
    independent_randomisation,
    randomisation_order,
)

__all__ = [
    "RobustnessResult",
    "SanityResult",
    "cascading_randomisation",
    "filling_study",
    "format_filling_table",
    "independent_randomisation",
    "ms_ssim",
    "randomisation_order",
    "robustness",
]
