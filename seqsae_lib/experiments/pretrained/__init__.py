"""The shipped models and the recipes that produce them.

Introduced in chapter 2.

A shipped checkpoint is always produced by a command in this repository: ``scripts/train_sasrec.py``
trains :data:`SASREC_ML100K` with several seeds, reports the mean and spread, and saves one seed's model
here with its validation and test metrics recorded in the JSON beside the weights. A test re-evaluates
the shipped model on MovieLens-100k and checks the recorded figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import os
from pathlib import Path
from typing import Any

from seqsae_lib.data import DATASETS
from seqsae_lib.model import load_checkpoint
from seqsae_lib.model import SASRec
from seqsae_lib.model import History, TrainConfig, train_sasrec
from seqsae_lib.sae import UNIT_START_SAE, UNIT_START_TRAIN

__all__ = ["SASRecRecipe", "SASREC_ML100K", "SASREC_ML1M_U2999", "SASREC_RECIPES", "sasrec_recipe", "SAERecipe", "SAE_ML100K_FINAL", "SAE_ML100K_BLOCK_0", "SAE_ML100K_BLOCK_1", "SAE_ML100K_EMBED", "SAE_ML1M_U2999_FINAL", "SAE_RECIPES", "SAE_RECIPES_BY_NAME", "sae_recipe", "PRETRAINED_DIR", "PRETRAINED_ENV_VAR", "pretrained_stem",
           "load_pretrained_sasrec", "load_pretrained_sae", "training_activations",
           "train_from_recipe", "sasrec_weights_sha256", "sae_provenance", "shipped_pipeline"]

PRETRAINED_DIR = Path(__file__).resolve().parent
"""Folder holding the shipped checkpoints (``<name>.pt`` + ``<name>.json``), ``pretrained/`` inside the installed package.

:meta hide-value:
"""


@dataclass(frozen=True)
class SASRecRecipe:
    """Everything needed to reproduce a shipped SASRec: data preprocessing, model and training settings.

    Introduced in chapter 2.
    """

    name: str
    """Checkpoint name in :data:`PRETRAINED_DIR`."""
    dataset: str
    """Data set passed to :func:`seqsae_lib.load_movielens`."""
    sequences: dict[str, Any]
    """Keyword arguments of :func:`seqsae_lib.make_sequences`."""
    model: dict[str, Any]
    """Keyword arguments of :class:`seqsae_lib.SASRec` (``num_items`` comes from the data)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation settings; ``seed`` and ``num_threads`` are overridden per run."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored beside the checkpoint."""
        return {"name": self.name, "dataset": self.dataset, "sequences": self.sequences,
                "model": self.model, "train": asdict(self.train)}


SASREC_ML100K = SASRecRecipe(
    name="sasrec_ml100k",
    dataset="ml-100k",
    sequences={"min_user_interactions": 5, "min_item_interactions": 5, "tie_break": "file"},
    model={"max_len": 200, "d_model": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.2, "fast_dropout": False},
    train=TrainConfig(max_epochs=200, batch_size=128, lr=2e-3, patience=10, progress=True, fused_loss=False),
)
"""The recipe of the shipped ML-100k model (chosen on validation NDCG@10; see ``scripts/train_sasrec.py``).
It pins ``fast_dropout=False`` and ``fused_loss=False``, the settings it was trained with before those options
became the defaults, so that it reproduces the shipped model; ``scripts/train_sasrec.py --fast`` trains it with
them."""

SASREC_ML1M_U2999 = replace(
    SASREC_ML100K,
    name="sasrec_ml1m_u2999",
    dataset="ml-1m-u2999",
    sequences=dict(SASREC_ML100K.sequences),
    model={**SASREC_ML100K.model, "dropout": 0.1},
    train=replace(SASREC_ML100K.train, batch_size=32, max_epochs=20),
)
"""The SASRec recipe for "ml-1m-u2999" (MovieLens-1M, users 1-2,999), chosen on validation NDCG@10 only by
``scripts/search_sasrec.py`` (seed 0, 1 thread, each configuration time-boxed to 10-12 minutes): the ML-100k
recipe with batch 32 instead of 128 (0.1656 vs 0.1153; with 2,999 users a batch of 128 gives only 24 steps an
epoch) and dropout 0.1 instead of 0.2 (0.1664 vs 0.1656, a noise-level gap, reached in 9 epochs instead of
12); d_model 128 reached 0.1515 in the same time (2.3x slower epochs). Training is capped at 20 epochs (about
18 minutes a seed on one thread; seed 0 was still improving slowly at epoch 20, valid NDCG@10 0.1768), so the
recipe is the same on every machine rather than time-boxed."""

SASREC_RECIPES: dict[str, SASRecRecipe] = {recipe.dataset: recipe for recipe in (SASREC_ML100K, SASREC_ML1M_U2999)}
"""The SASRec recipe of each data set that has one, by data-set name (what ``scripts/train_sasrec.py
--dataset`` picks)."""


def sasrec_recipe(dataset: str) -> SASRecRecipe:
    """The SASRec recipe chosen for ``dataset`` (a key of :data:`SASREC_RECIPES`).

    Introduced in chapter 2. A data set of :data:`seqsae_lib.DATASETS` without a chosen recipe (``"ml-1m"``)
    gets the ML-100k recipe's settings under its own name (nothing is shipped for it: load fails with a
    missing-checkpoint error; train it with ``RETRAIN = True`` or ``scripts/train_sasrec.py``).

    Raises
    ------
    KeyError
        Not a data set the library knows; the message lists those that have a recipe.
    """
    if dataset in SASREC_RECIPES:
        return SASREC_RECIPES[dataset]
    if dataset in DATASETS:  # a known data set without a chosen recipe: ML-100k's settings, nothing shipped
        return replace(SASREC_ML100K, name=f"sasrec_{dataset.replace('-', '')}", dataset=dataset)
    raise KeyError(f"no SASRec recipe for data set {dataset!r}; recipes exist for {sorted(SASREC_RECIPES)}")


PRETRAINED_ENV_VAR = "SEQSAE_PRETRAINED"
"""Environment variable naming a folder that replaces :data:`PRETRAINED_DIR` (``make retrain`` uses it)."""


def pretrained_stem(name: str = SASREC_ML100K.name) -> Path:
    """Path stem (no suffix) of a shipped checkpoint.

    Introduced in chapter 2. The folder is :data:`PRETRAINED_DIR`, unless
    the environment variable ``SEQSAE_PRETRAINED`` names another one: ``make retrain`` trains every model
    from scratch into such a folder (the scripts save there) and builds the book from it, leaving the
    shipped files untouched.
    """
    folder = os.environ.get(PRETRAINED_ENV_VAR, "").strip()
    return (Path(folder).expanduser() if folder else PRETRAINED_DIR) / name


def load_pretrained_sasrec(fingerprint: dict[str, Any], name: str = SASREC_ML100K.name) -> tuple[SASRec, dict]:
    """Load a shipped SASRec, refusing data preprocessed differently from its training data.

    Introduced in chapter 2.

    Parameters
    ----------
    fingerprint
        ``split.fingerprint`` (or ``SequenceData.fingerprint()`` plus ``"split"``) of the data at hand.
    name
        Checkpoint name in :data:`PRETRAINED_DIR`.

    Returns
    -------
    model, meta
        The model in eval mode and the JSON metadata (recipe, seeds, recorded metrics).

    Raises
    ------
    seqsae_lib.model.checkpoints.CheckpointError
        Missing or truncated files; :class:`seqsae_lib.FingerprintMismatchError` for other data.
    """
    model, meta = load_checkpoint(pretrained_stem(name), expected_fingerprint=fingerprint)
    model.eval()
    return model, meta


def train_from_recipe(
    split: Any, recipe: SASRecRecipe = SASREC_ML100K, *, seed: int = 0, num_threads: int | None = None,
    **train_overrides: Any,
) -> tuple[SASRec, History]:
    """Build and train a SASRec on ``split`` exactly as ``recipe`` says, with one seed.

    Introduced in chapter 2.
    """
    from seqsae_lib.utils.runtime import set_seed

    set_seed(seed)
    model = SASRec(num_items=split.num_items, **recipe.model)
    config = replace(recipe.train, seed=seed, num_threads=num_threads, **train_overrides)
    history = train_sasrec(model, split, config)
    return model, history


@dataclass(frozen=True)
class SAERecipe:
    """Everything needed to reproduce a shipped SAE: the SASRec it reads, where, and how it is trained.

    Introduced in chapter 3.
    """

    name: str
    """Checkpoint name in :data:`PRETRAINED_DIR`."""
    sasrec: str
    """Name of the shipped SASRec whose states the SAE reads."""
    capture_point: str
    """Capture point of the SASRec (see :attr:`seqsae_lib.SASRec.capture_points`)."""
    sae: dict[str, Any]
    """Keyword arguments of :class:`seqsae_lib.SAEConfig` (``d_in`` comes from the model)."""
    train: dict[str, Any]
    """Keyword arguments of :class:`seqsae_lib.SAETrainConfig`."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored beside the checkpoint."""
        return asdict(self)


SAE_ML100K_FINAL = SAERecipe(
    name="sae_ml100k_final",
    sasrec=SASREC_ML100K.name,
    capture_point="final",
    sae={"d_sae": 2048, "kind": "topk", "k": 16, **UNIT_START_SAE},
    train={"batch_size": 1024, "lr": 2e-3, "num_epochs": 10, **UNIT_START_TRAIN},
)
"""The recipe of the shipped SAE on the shipped SASRec's final state (see ``scripts/train_sae.py``). It pins the
plain AuxK at 1/32 and the unit-norm encoder start it was trained with (the library's defaults are now the
rescaled AuxK at 1/4 and the fitted start: lower FVU, as few dead latents, ``bench/bench_sae_init.py``)."""

SAE_ML1M_U2999_FINAL = SAERecipe(
    name="sae_ml1m_u2999_final",
    sasrec=SASREC_ML1M_U2999.name,
    capture_point="final",
    sae=dict(SAE_ML100K_FINAL.sae),
    train={**SAE_ML100K_FINAL.train, "num_epochs": 2},
)
"""The SAE recipe for "ml-1m-u2999" (MovieLens-1M, users 1-2,999): the ML-100k recipe; with about five times as
many stored states, 2 epochs see as many vectors as the ML-100k SAE's 10."""

SAE_ML100K_BLOCK_0 = replace(SAE_ML100K_FINAL, name="sae_ml100k_block_0", capture_point="block_0")
"""The ML-100k SAE recipe at the output of the first transformer block (``"block_0"``): the settings of
:data:`SAE_ML100K_FINAL` at another capture point. Steering there is not a fixed per-item bonus (the second
block and the final LayerNorm react to the edit; chapter 5)."""

SAE_ML100K_BLOCK_1 = replace(SAE_ML100K_FINAL, name="sae_ml100k_block_1", capture_point="block_1")
"""The ML-100k SAE recipe at the output of the second (last) block, before the final LayerNorm."""

SAE_ML100K_EMBED = replace(SAE_ML100K_FINAL, name="sae_ml100k_embed", capture_point="embed")
"""The ML-100k SAE recipe at the input embeddings (item plus position embedding)."""

SAE_RECIPES: dict[str, SAERecipe] = {"ml-100k": SAE_ML100K_FINAL, "ml-1m-u2999": SAE_ML1M_U2999_FINAL}
"""The shipped SAE recipe of each data set that has one, by data-set name (the one at ``"final"``)."""

SAE_RECIPES_BY_NAME: dict[str, SAERecipe] = {
    recipe.name: recipe
    for recipe in (SAE_ML100K_FINAL, SAE_ML100K_BLOCK_0, SAE_ML100K_BLOCK_1, SAE_ML100K_EMBED, SAE_ML1M_U2999_FINAL)
}
"""Every SAE recipe by its checkpoint name (what ``scripts/train_sae.py --recipe`` picks). Which of them are
shipped is what :data:`PRETRAINED_DIR` holds; ``sae_recipe(dataset, capture_point)`` finds one by place."""


def sae_recipe(dataset: str, capture_point: str | None = None) -> SAERecipe:
    """The SAE recipe for ``dataset`` (a key of :data:`SAE_RECIPES`), at ``capture_point`` if given.

    Introduced in chapter 3. Without ``capture_point``: the data set's shipped recipe (at ``"final"``).
    With one: the recipe of :data:`SAE_RECIPES_BY_NAME` for that data set and capture point (e.g.
    ``sae_recipe("ml-100k", "block_0") is SAE_ML100K_BLOCK_0``), else the data set's recipe moved to that
    capture point under the name ``sae_<data set>_<capture point>`` (nothing shipped for it). A known data set
    without a recipe gets the ML-100k recipe under its own name, as :func:`sasrec_recipe` does.

    Raises
    ------
    KeyError
        Not a data set the library knows; the message lists those that have a recipe.
    TypeError
        ``capture_point`` not a string.
    """
    if dataset in SAE_RECIPES:
        base = SAE_RECIPES[dataset]
    elif dataset in DATASETS:  # a known data set without a chosen recipe: ML-100k's settings, nothing shipped
        base = replace(SAE_ML100K_FINAL, name=f"sae_{dataset.replace('-', '')}_final",
                       sasrec=sasrec_recipe(dataset).name)
    else:
        raise KeyError(f"no SAE recipe for data set {dataset!r}; recipes exist for {sorted(SAE_RECIPES)}")
    if capture_point is None or capture_point == base.capture_point:
        return base
    if not isinstance(capture_point, str):
        raise TypeError(f"capture_point must be a str such as 'block_0', got {type(capture_point).__name__}")
    for recipe in SAE_RECIPES_BY_NAME.values():
        if recipe.sasrec == base.sasrec and recipe.capture_point == capture_point:
            return recipe
    stem = base.name[: -len("_final")] if base.name.endswith("_final") else base.name
    return replace(base, name=f"{stem}_{capture_point}", capture_point=capture_point)


def training_activations(model: SASRec, split: Any, capture_point: str, *, progress: bool = False) -> Any:
    """States an SAE is trained on: every position of every user's training window, with metadata.

    Introduced in chapter 3. The windows are ``split.train`` (the last
    ``max_len`` items), so the last position's next item is the validation target; test targets are
    never seen.
    """
    from seqsae_lib.sae import collect_activations

    return collect_activations(model, split.train, capture_point, next_items=split.valid_targets,
                               fingerprint=split.fingerprint, progress=progress)


def sasrec_weights_sha256(name: str = SASREC_ML100K.name) -> str:
    """The sha256 of a shipped SASRec's weights, as recorded beside them.

    Introduced in chapter 3. An SAE records the hash of the model it was
    trained on, so a retrained SASRec cannot silently be paired with an SAE made for the old one.
    """
    from seqsae_lib.model.checkpoints import FORMAT, FORMAT_VERSION
    from seqsae_lib.model import CheckpointError
    from seqsae_lib.utils.fileio import load_meta

    meta, _, _ = load_meta(pretrained_stem(name), fmt=FORMAT, version=FORMAT_VERSION, required=(),
                           error=CheckpointError, what="SASRec checkpoint")
    return str(meta["weights_sha256"])


def sae_provenance(recipe: "SAERecipe", fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Metadata a shipped SAE must carry: capture point, SASRec name and weights hash, data fingerprint.

    Introduced in chapter 3; written by ``scripts/train_sae.py`` and checked
    by :func:`load_pretrained_sae`.
    """
    return {"capture_point": recipe.capture_point, "sasrec": recipe.sasrec,
            "sasrec_weights_sha256": sasrec_weights_sha256(recipe.sasrec), "fingerprint": fingerprint}


def load_pretrained_sae(fingerprint: dict[str, Any], recipe: "SAERecipe | None" = None) -> Any:
    """Load a shipped SAE, refusing one made for another SASRec, capture point or data.

    Introduced in chapter 3.

    Raises
    ------
    seqsae_lib.sae.io.SAEFileError
        Missing or truncated files, or metadata that does not match (which key, which values), e.g. an
        SAE trained on another version of the shipped SASRec (its weights hash differs).
    """
    from seqsae_lib.sae import SparseAutoencoder

    recipe = recipe or SAE_ML100K_FINAL
    sae = SparseAutoencoder.load(pretrained_stem(recipe.name), expected=sae_provenance(recipe, fingerprint))
    sae.eval()
    return sae


def shipped_pipeline(
    split: Any, *, retrain: bool = False, seed: int = 0, num_threads: int | None = None,
    recipe: "SAERecipe | None" = None,
) -> tuple[SASRec, Any, Any]:
    """The SASRec, its SAE and the SAE's activation store, loaded from the shipped files or retrained.

    Introduced in chapter 4: the one call behind the setup of chapters
    4 and 5 and the benches. The recipes are those of the split's data set (:func:`sasrec_recipe`,
    :func:`sae_recipe`; ``recipe`` overrides the SAE's). With ``retrain=True`` both models are trained from
    their recipes with ``seed`` (minutes); otherwise the shipped files are loaded (checked against
    ``split.fingerprint``).

    Returns
    -------
    model, sae, store
        SASRec in eval mode, the SAE in eval mode, and :func:`training_activations` at the SAE's capture
        point.
    """
    from seqsae_lib.sae import SAEConfig
    from seqsae_lib.sae import SAETrainConfig, train_sae

    dataset = str(split.fingerprint.get("dataset", ""))
    recipe = recipe or sae_recipe(dataset)
    sasrec = sasrec_recipe(dataset)
    if sasrec.name != recipe.sasrec:
        raise ValueError(f"SAE recipe {recipe.name!r} reads SASRec {recipe.sasrec!r}, but the data set {dataset!r} "
                         f"is modelled by {sasrec.name!r}")
    if retrain:
        model, _ = train_from_recipe(split, sasrec, seed=seed, num_threads=num_threads)
        model.eval()
    else:
        model, _ = load_pretrained_sasrec(split.fingerprint, name=sasrec.name)
    store = training_activations(model, split, recipe.capture_point)
    if retrain:
        sae, _ = train_sae(store, SAEConfig(d_in=store.d_model, seed=seed, **recipe.sae),
                           SAETrainConfig(seed=seed, num_threads=num_threads, **recipe.train))
        sae.fold_normalization()
        sae.eval()
    else:
        sae = load_pretrained_sae(split.fingerprint, recipe)
    return model, sae, store
