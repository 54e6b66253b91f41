"""Studies: experiments that run explainers and score them with metrics.

Metrics (:mod:`unmask.metrics`) score given maps, or (kind ``"explainer"``) re-run an explainer
they are handed, one value per image; a study runs explainers by name, re-runs them under other
settings or on randomised models, reports curves and combines metrics:

- :mod:`~unmask.studies.robustness`: the mean pairwise similarity of an explainer's maps over
  hyperparameter settings or seeds (seed 001, Sec. 4.4);
- :mod:`~unmask.studies.sanity`: cascading and independent model randomisation (Adebayo et al.
  2018);
- :mod:`~unmask.studies.filling`: which removal really removes an object (seed 001, Table 1);
- :mod:`~unmask.studies.consistency`: whether images with the same discretised explanation get
  the same prediction (Dasgupta et al. 2022), over the batch;
- :mod:`~unmask.studies.sufficiency`: whether images whose explanations are close get the same
  prediction (Dasgupta et al. 2022), over the batch;
- :mod:`~unmask.studies.roar`: ROAR / KAR (Hooker et al. 2019), retraining the synthetic CNN on
  images ablated by each method's maps;
- :mod:`~unmask.studies.figure4`: CP scores against the hallucination score (Kolek et al. 2023,
  Figure 4), run by ``unmask figure4``.
"""

from .consistency import consistency, discretise_top_n
from .filling import filling_study, format_filling_table, ms_ssim
from .roar import RoarResult, roar
from .robustness import RobustnessResult, robustness
from .sanity import (
    SanityResult,
    cascading_randomisation,
    independent_randomisation,
    randomisation_order,
)
from .sufficiency import map_distances, sufficiency

__all__ = [
    "RoarResult",
    "RobustnessResult",
    "SanityResult",
    "cascading_randomisation",
    "consistency",
    "discretise_top_n",
    "filling_study",
    "format_filling_table",
    "independent_randomisation",
    "map_distances",
    "ms_ssim",
    "randomisation_order",
    "roar",
    "robustness",
    "sufficiency",
]
