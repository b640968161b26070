"""Steering recommendations with SAE latents: edits, concepts, latent selection, evaluation, live sliders.

Introduced in chapter 5.

* :mod:`~seqsae_lib.steering.edits`: latent edits (:class:`LatentEdit`) and what they do to a state;
* :mod:`~seqsae_lib.steering.latent_steering` / :mod:`~seqsae_lib.steering.vector_steering`: the steering objects;
* :mod:`~seqsae_lib.steering.scoring`: running them (hooks, cached states);
* :mod:`~seqsae_lib.steering.concepts` / :mod:`~seqsae_lib.steering.catalogue_concepts`: concepts over the catalogue;
* :mod:`~seqsae_lib.steering.promotion` / :mod:`~seqsae_lib.steering.selection`: the latents that steer towards one;
* :mod:`~seqsae_lib.steering.evaluation`, :mod:`~seqsae_lib.steering.baselines`,
  :mod:`~seqsae_lib.steering.tradeoffs`: measuring steering against baselines;
* :mod:`~seqsae_lib.steering.concept_table`: every concept in one table (SAE steering against the baselines
  within NDCG budgets);
* :mod:`~seqsae_lib.steering.geometry`: whether a steering is a fixed per-item bonus or depends on the user;
* :mod:`~seqsae_lib.steering.unlabelled`: steering along latents chosen without labels, judged on metadata
  against principal and random directions;
* :mod:`~seqsae_lib.steering.live`: the engine of the steering widget;
* :mod:`~seqsae_lib.steering.calibration` / :mod:`~seqsae_lib.steering.showcase`: its sliders in a reader's
  unit (the share of an average user's top-k, with the NDCG cost), and the concepts and user the book shows;
* :mod:`~seqsae_lib.steering.static`: the payload of the steering widget that runs in the rendered book, without
  a kernel.
"""

from seqsae_lib.steering.baselines import (
    Rerank,
    hidden_dim_baseline,
    mean_difference_baseline,
    random_latent_baseline,
    rerank_baseline,
    sae_method,
    steering_methods,
)
from seqsae_lib.steering.calibration import (
    RERANK_GRID,
    SAE_GRID,
    SliderCalibration,
    SliderCurve,
    calibrate_sliders,
)
from seqsae_lib.steering.catalogue_concepts import (
    attribute_concept,
    decade_concept,
    genre_concept,
    get_concept,
    known_concepts,
    popularity_concept,
    table_concepts,
    year_range_concept,
)
from seqsae_lib.steering.concept_table import BASELINES, TABLE_STRENGTHS, concept_steering_table, wins_ties_losses
from seqsae_lib.steering.concepts import Concept, UnknownConceptError, check_concept
from seqsae_lib.steering.edits import OPS, POSITIONS, LatentEdit, add_vector, edit_delta, preactivation_std
from seqsae_lib.steering.evaluation import (
    GRID_COLUMNS,
    SteeringDetails,
    SteeringEvaluator,
    evaluate_methods,
    evaluate_steering,
)
from seqsae_lib.steering.geometry import bonus_rerank_baseline, score_changes, user_dependence
from seqsae_lib.steering.latent_steering import Steering
from seqsae_lib.steering.live import LiveSteering, Recommendations, before_after_grid
from seqsae_lib.steering.promotion import latent_promotion
from seqsae_lib.steering.scoring import (
    SteeringCache,
    cached_last_state,
    check_sae_fits,
    scores_from_state,
    steer,
    steered_scores,
)
from seqsae_lib.steering.selection import (
    CONCEPT_RULES,
    SELECTION_COLUMNS,
    combine,
    concept_lift,
    concept_steering,
    select_latents,
)
from seqsae_lib.steering.showcase import showcase_concepts, showcase_user, slider_ends
from seqsae_lib.steering.static import STATIC_FORMAT, export_static_steering, payload_size, static_top_k
from seqsae_lib.steering.tradeoffs import gini, jaccard_at_k, pareto_front, share_at_equal_cost
from seqsae_lib.steering.unlabelled import (
    UNLABELLED_COLUMNS,
    UNLABELLED_SCORES,
    UNLABELLED_TYPES,
    compare_unlabelled,
    unlabelled_latents,
    unlabelled_steering,
)
from seqsae_lib.steering.vector_steering import StateSteering, VectorSteering

__all__ = [
    "BASELINES",
    "CONCEPT_RULES",
    "GRID_COLUMNS",
    "OPS",
    "POSITIONS",
    "RERANK_GRID",
    "SAE_GRID",
    "SELECTION_COLUMNS",
    "STATIC_FORMAT",
    "SliderCalibration",
    "SliderCurve",
    "Concept",
    "LatentEdit",
    "LiveSteering",
    "Recommendations",
    "Rerank",
    "StateSteering",
    "Steering",
    "SteeringCache",
    "SteeringDetails",
    "SteeringEvaluator",
    "TABLE_STRENGTHS",
    "UNLABELLED_COLUMNS",
    "UNLABELLED_SCORES",
    "UNLABELLED_TYPES",
    "UnknownConceptError",
    "VectorSteering",
    "add_vector",
    "attribute_concept",
    "before_after_grid",
    "calibrate_sliders",
    "bonus_rerank_baseline",
    "cached_last_state",
    "check_concept",
    "check_sae_fits",
    "combine",
    "compare_unlabelled",
    "concept_lift",
    "concept_steering_table",
    "concept_steering",
    "decade_concept",
    "edit_delta",
    "evaluate_methods",
    "evaluate_steering",
    "export_static_steering",
    "genre_concept",
    "get_concept",
    "gini",
    "hidden_dim_baseline",
    "jaccard_at_k",
    "known_concepts",
    "latent_promotion",
    "mean_difference_baseline",
    "pareto_front",
    "payload_size",
    "popularity_concept",
    "preactivation_std",
    "random_latent_baseline",
    "rerank_baseline",
    "sae_method",
    "score_changes",
    "scores_from_state",
    "select_latents",
    "share_at_equal_cost",
    "showcase_concepts",
    "showcase_user",
    "slider_ends",
    "static_top_k",
    "steer",
    "steered_scores",
    "steering_methods",
    "table_concepts",
    "unlabelled_latents",
    "unlabelled_steering",
    "user_dependence",
    "wins_ties_losses",
    "year_range_concept",
]
