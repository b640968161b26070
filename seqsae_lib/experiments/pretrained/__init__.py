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

__all__ = ["SASRecRecipe", "SASREC_ML100K", "SASREC_ML1M_U2999", "SASREC_RECIPES", "sasrec_recipe", "SAERecipe", "SAE_ML100K_FINAL", "SAE_ML1M_U2999_FINAL", "SAE_RECIPES", "sae_recipe", "PRETRAINED_DIR", "PRETRAINED_ENV_VAR", "pretrained_stem",
           "load_pretrained_sasrec", "load_pretrained_sae", "training_activations",
           "train_from_recipe", "sasrec_weights_sha256", "sae_provenance", "shipped_pipeline"]

PRETRAINED_DIR = Path(__file__).resolve().parent
"""Folder holding the shipped checkpoints (``<name>.pt`` + ``<name>.json``)."""


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
    model={"max_len": 200, "d_model": 64, "n_layers": 2, "n_heads": 1, "dropout": 0.2},
    train=TrainConfig(max_epochs=200, batch_size=128, lr=2e-3, patience=10, progress=True),
)
"""The recipe of the shipped ML-100k model (chosen on validation NDCG@10; see ``scripts/train_sasrec.py``)."""

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
    sae={"d_sae": 2048, "kind": "topk", "k": 16},
    train={"batch_size": 1024, "lr": 2e-3, "num_epochs": 10},
)
"""The recipe of the shipped SAE on the shipped SASRec's final state (see ``scripts/train_sae.py``)."""

SAE_ML1M_U2999_FINAL = SAERecipe(
    name="sae_ml1m_u2999_final",
    sasrec=SASREC_ML1M_U2999.name,
    capture_point="final",
    sae=dict(SAE_ML100K_FINAL.sae),
    train={**SAE_ML100K_FINAL.train, "num_epochs": 2},
)
"""The SAE recipe for "ml-1m-u2999" (MovieLens-1M, users 1-2,999): the ML-100k recipe; with about five times as
many stored states, 2 epochs see as many vectors as the ML-100k SAE's 10."""

SAE_RECIPES: dict[str, SAERecipe] = {"ml-100k": SAE_ML100K_FINAL, "ml-1m-u2999": SAE_ML1M_U2999_FINAL}
"""The shipped SAE recipe of each data set that has one, by data-set name."""


def sae_recipe(dataset: str) -> SAERecipe:
    """The SAE recipe shipped for ``dataset`` (a key of :data:`SAE_RECIPES`).

    Introduced in chapter 3. A known data set without one gets the ML-100k recipe under its own name, as
    :func:`sasrec_recipe` does.

    Raises
    ------
    KeyError
        Not a data set the library knows; the message lists those that have a recipe.
    """
    if dataset in SAE_RECIPES:
        return SAE_RECIPES[dataset]
    if dataset in DATASETS:  # a known data set without a chosen recipe: ML-100k's settings, nothing shipped
        return replace(SAE_ML100K_FINAL, name=f"sae_{dataset.replace('-', '')}_final",
                       sasrec=sasrec_recipe(dataset).name)
    raise KeyError(f"no SAE recipe for data set {dataset!r}; recipes exist for {sorted(SAE_RECIPES)}")


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
