"""Where does the monosemanticity claim hold? The fair verdict across capture points, sizes, variants and data.

Introduced in chapter 4. One *condition* is a data set, a capture point of its SASRec and an SAE
configuration. For each, :func:`run_condition` trains the SAE, encodes every stored state, and compares its
latents with five controls on the same positions (the same SAE before its first training step, whose decoder
rows already point along data vectors; an untrained SAE of the same configuration with random rows; a random
rotation; the hidden dimensions; PCA; see :mod:`seqsae_lib.interpret.unit_types`) by the fair,
chance-corrected concentration of genre among each unit's top firing positions (input and next item), with
bootstrap CIs; and counts the input genres some unit covers purely (a unit whose top positions are at least
half that genre). ``scripts/conditions_study.py`` runs
:data:`CONDITIONS` and records the tables that chapter 4 reads with :func:`load_conditions`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from seqsae_lib.data import SequenceData
from seqsae_lib.interpret import (
    compare_to_controls, concept_coverage, genre_labels, initial_sae_units, paired_comparison,
    top_firing_concentration,
)
from seqsae_lib.interpret.unit_types import _unit_type_makers
from seqsae_lib.sae import (
    UNIT_START_SAE, UNIT_START_TRAIN, ActivationStore, SAEConfig, SAETrainConfig, evaluate_reconstruction, train_sae,
)
from seqsae_lib.utils.checks import check_choice, check_int

__all__ = ["Condition", "CONDITIONS", "CONTROLS", "RECORDED_DIR", "run_condition", "load_conditions"]

RECORDED_DIR = Path(__file__).resolve().parent / "recorded"
"""Folder of the recorded study tables (``conditions.csv``, ``condition_verdicts.csv``, ``conditions.json``),
``experiments/recorded/`` inside the installed package.

:meta hide-value:
"""

CONTROLS: tuple[str, ...] = ("SAE before training", "untrained SAE", "random rotation", "hidden dims", "PCA")
"""The unit types every SAE is compared with, in the tables' order."""


@dataclass(frozen=True)
class Condition:
    """One point of the conditions study.

    Introduced in chapter 4.
    """

    name: str
    """Short label of the row (e.g. ``"k=4"``)."""
    dataset: str = "ml-100k"
    """``"ml-100k"``, ``"ml-1m-u2999"`` (MovieLens-1M users 1-2,999) or ``"planted"`` (synthetic topics)."""
    capture_point: str = "final"
    """Where the SAE reads the SASRec (``embed``, ``block_0``, ``block_1``, ``final``)."""
    d_sae: int = 2048
    """Dictionary size."""
    k: int = 16
    """Active latents per position (TopK / BatchTopK)."""
    kind: str = "topk"
    """SAE variant: ``topk``, ``batchtopk`` or ``relu`` (ReLU with an L1 penalty)."""


CONDITIONS: tuple[Condition, ...] = (
    Condition("shipped recipe"),
    Condition("embed", capture_point="embed"),
    Condition("block_0", capture_point="block_0"),
    Condition("block_1", capture_point="block_1"),
    Condition("k=4", k=4),
    Condition("k=32", k=32),
    Condition("512 latents", d_sae=512),
    Condition("4,096 latents", d_sae=4096),
    Condition("BatchTopK", kind="batchtopk"),
    Condition("ReLU-L1", kind="relu"),
    Condition("planted topics", dataset="planted", d_sae=256, k=8),
    Condition("ML-1M users 1-2,999", dataset="ml-1m-u2999"),
)
"""The study's grid: the shipped SAE recipe on ML-100k's final state, varied one factor at a time."""


def _units(sae: Any, config: SAEConfig, train_config: SAETrainConfig, store: ActivationStore,
           seed: int) -> dict[str, Any]:
    makers = _unit_type_makers(sae, store, seed=seed)  # the chapter's five unit types, same seeds
    units = {name: makers[name]() for name in ("SAE", "untrained SAE", "random rotation", "hidden dims", "PCA")}
    units["SAE before training"] = initial_sae_units(config, train_config, store)
    return {name: units[name] for name in ("SAE", *CONTROLS)}


def run_condition(
    condition: Condition,
    store: ActivationStore,
    seq_data: SequenceData,
    *,
    num_epochs: int = 10,
    seed: int = 0,
    num_threads: int | None = None,
    top_n: int = 100,
    min_fires: int = 100,
    n_boot: int = 1000,
    sae_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one condition's SAE on ``store`` and compare it fairly with the controls.

    Introduced in chapter 4.

    Parameters
    ----------
    condition : Condition
    store : ActivationStore
        States of the condition's SASRec at ``condition.capture_point``, on the condition's data set.
    seq_data : SequenceData
        The data the store was collected on (its genres label the positions).
    num_epochs, seed, num_threads
        SAE training (batch 1,024, lr 2e-3, as the shipped recipe), with the decoder initialised from data
        (``SAETrainConfig.decoder_init="data"``) and the rescaled AuxK (``SAEConfig(aux_rescale=True)``), which
        keep latents alive at small k and large dictionaries where the shipped recipe's random rows leave up to
        three quarters dead (``bench/bench_dead_latents.py``). Two untrained controls: ``"SAE before training"`` is
        this SAE's exact starting point (:func:`~seqsae_lib.sae.training.initial_sae`: data-vector rows), so the
        SAE-minus-it difference is what the training steps learned; ``"untrained SAE"`` is the same ``SAEConfig``
        with random rows (seed ``seed``).
    top_n, min_fires, n_boot
        Passed to the fair measures (each unit's ``top_n`` strongest firing positions; units firing fewer than
        ``min_fires`` times are not scored) and the bootstrap.
    sae_options, train_options
        :class:`~seqsae_lib.sae.config.SAEConfig` and :class:`~seqsae_lib.sae.training_config.SAETrainConfig`
        fields that replace the recorded study's settings (for instance the library's current defaults,
        ``scripts/conditions_study.py --library-defaults``); the condition's own fields (size, k, kind) and the
        seed cannot be replaced this way.

    Returns
    -------
    summary, verdicts
        ``summary``: one dict for the condition (its fields, SAE ``fvu``, ``dead`` share, ``l0``, units scored,
        genres covered purely by each unit type, wins of the SAE's best unit per genre (AUC) against the
        SAE before training, the untrained SAE and the hidden dimensions, seconds). ``verdicts``: one row per (side, control) of
        :func:`seqsae_lib.interpret.compare_to_controls` on ``kl_excess``.

    Raises
    ------
    TypeError
        ``condition`` is not a :class:`Condition`.
    ValueError
        The store was read at another capture point, or the store's SASRec (by its data fingerprint) or
        ``seq_data`` comes from another data set than ``condition.dataset`` (``"planted"`` expects the
        synthetic data, named ``"synthetic"``); or ``kind`` or ``num_epochs`` is invalid.
    """
    if not isinstance(condition, Condition):
        raise TypeError(f"condition must be a Condition, got {type(condition).__name__}")
    if store.capture_point != condition.capture_point:
        raise ValueError(f"condition {condition.name!r} reads {condition.capture_point!r} but the store holds "
                         f"{store.capture_point!r} states")
    expected = "synthetic" if condition.dataset == "planted" else condition.dataset
    found = {"the store's SASRec was trained on": store.model_fingerprint.get("dataset"),
             "seq_data is": seq_data.name}
    for what, name in found.items():
        if name is not None and name != expected:
            raise ValueError(f"condition {condition.name!r} is on {condition.dataset!r} (data set {expected!r}) but "
                             f"{what} {name!r}: collect the store from that data set's SASRec")
    check_choice("kind", condition.kind, ("topk", "batchtopk", "relu"))
    num_epochs = check_int("num_epochs", num_epochs, minimum=1)
    start = time.perf_counter()
    # the settings the recorded study ran with (before the library's defaults became aux 1/4 and a fitted start)
    fixed = {"d_in", "d_sae", "kind", "k", "seed", "num_epochs", "num_vectors"} & {*(sae_options or {}),
                                                                              *(train_options or {})}
    if fixed:
        raise ValueError(f"sae_options / train_options may not set {sorted(fixed)}: they are the condition's or "
                         f"run_condition's own arguments")
    config = SAEConfig(**{"d_in": store.d_model, "d_sae": condition.d_sae, "kind": condition.kind, "k": condition.k,
                          "seed": seed, "aux_rescale": True, "aux_coefficient": UNIT_START_SAE["aux_coefficient"],
                          **(sae_options or {})})
    train_config = SAETrainConfig(**{"batch_size": 1024, "lr": 2e-3, "num_epochs": num_epochs, "seed": seed,
                                     "num_threads": num_threads, "progress": False, "decoder_init": "data",
                                     **UNIT_START_TRAIN, **(train_options or {})})
    sae, _ = train_sae(store, config, train_config)
    sae.eval()
    quality = evaluate_reconstruction(sae, store.acts)
    train_seconds = time.perf_counter() - start

    start = time.perf_counter()
    units = _units(sae, config, train_config, store, seed)
    rows, labelled = [], {}
    for side in ("input", "next"):
        labels, names = labelled[side] = genre_labels(store, seq_data, side)
        frames = {name: top_firing_concentration(acts, labels, names, top_n=top_n, min_fires=min_fires, seed=seed)
                  for name, acts in units.items()}
        table = compare_to_controls(frames, "kl_excess", reference="SAE", n_boot=n_boot, seed=seed)
        rows.append(table.assign(side=side))
    verdicts = pd.concat(rows, ignore_index=True)
    verdicts.insert(0, "condition", condition.name)

    labels, names = labelled["input"]
    coverage = {name: concept_coverage(acts, labels, names, top_n=top_n, min_fires=min_fires)
                for name, acts in units.items()}
    summary: dict[str, Any] = {**asdict(condition), "num_epochs": num_epochs, "positions": len(store),
                               "fvu": float(quality["fvu"]), "dead": float(quality["dead_fraction"]),
                               "l0": float(quality["l0"])}
    summary["sae_scored"] = int(frames["SAE"]["eligible"].sum())
    for name, table in coverage.items():
        summary[f"covered: {name}"] = int(table["covered"].sum())
    summary["genres"] = len(names)
    for control in ("SAE before training", "untrained SAE", "hidden dims"):
        paired = paired_comparison(coverage["SAE"]["best_auc"].to_numpy(), coverage[control]["best_auc"].to_numpy(),
                                   names=("SAE", control), n_boot=n_boot, seed=seed)
        summary[f"best-AUC wins vs {control}"] = f"{paired['wins']}/{paired['n']}"
    summary["train_seconds"] = round(train_seconds, 1)
    summary["score_seconds"] = round(time.perf_counter() - start, 1)
    return summary, verdicts


def load_conditions(folder: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The recorded conditions study: ``(summary, verdicts, meta)`` as written by ``scripts/conditions_study.py``.

    Introduced in chapter 4. ``summary`` has one row per condition, ``verdicts`` one row per (condition,
    side, control), ``meta`` the command, runtime, threads and library version of the run.

    Raises
    ------
    FileNotFoundError
        The study has not been recorded in ``folder`` (default :data:`RECORDED_DIR`); the message says how to
        record it.
    """
    import json

    base = Path(folder) if folder is not None else RECORDED_DIR
    paths = [base / "conditions.csv", base / "condition_verdicts.csv", base / "conditions.json"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing in {base}: record the study with "
                                f"`python scripts/conditions_study.py`")
    return pd.read_csv(paths[0]), pd.read_csv(paths[1]), json.loads(paths[2].read_text())
