"""Model families, hyperparameter tuning, decision threshold, metrics and explanations.

Two families, RandomForest and XGBoost, each inside one scikit-learn Pipeline with the physics
features and the normalisation, so the fitted model takes contract readings. Optuna searches
both families at once on validation PR-AUC; the best configuration is refit on train ∪
validation with a decision threshold that maximises F1 on out-of-fold probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from predmaint.features import DataError, PhysicsFeatures

log = logging.getLogger(__name__)
FAMILIES: tuple[str, ...] = ("random_forest", "xgboost")
MODE_TARGETS: tuple[str, ...] = ("twf", "hdf", "pwf", "osf")  # RNF is random by construction


def build_model(family: str, params: dict[str, Any], *, rolling_window: int = 0, seed: int = 0) -> Pipeline:
    """Features → normalisation → classifier, ready to fit on contract readings."""
    if family == "random_forest":
        classifier: Any = RandomForestClassifier(random_state=seed, n_jobs=-1, **params)
    elif family == "xgboost":
        from xgboost import XGBClassifier

        classifier = XGBClassifier(
            random_state=seed, n_jobs=-1, tree_method="hist", eval_metric="aucpr", verbosity=0, **params
        )
    else:
        raise DataError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    return Pipeline(
        [
            ("features", PhysicsFeatures(rolling_window=rolling_window)),
            ("scale", StandardScaler()),
            ("model", classifier),
        ]
    )


def suggest_params(trial: Any, family: str, positive_share: float) -> dict[str, Any]:
    """Optuna search space of one family (class imbalance handled by weights in both)."""
    if family == "random_forest":
        return {
            "n_estimators": trial.suggest_int("rf_n_estimators", 100, 400, step=50),
            "max_depth": trial.suggest_int("rf_max_depth", 6, 30),
            "min_samples_leaf": trial.suggest_int("rf_min_samples_leaf", 1, 8),
            "max_features": trial.suggest_categorical("rf_max_features", ["sqrt", 0.5, 1.0]),
            "class_weight": trial.suggest_categorical("rf_class_weight", ["balanced_subsample", None]),
        }
    imbalance = (1 - positive_share) / max(positive_share, 1e-6)
    return {
        "n_estimators": trial.suggest_int("xgb_n_estimators", 100, 600, step=50),
        "max_depth": trial.suggest_int("xgb_max_depth", 3, 10),
        "learning_rate": trial.suggest_float("xgb_learning_rate", 0.02, 0.3, log=True),
        "subsample": trial.suggest_float("xgb_subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("xgb_colsample_bytree", 0.6, 1.0),
        "min_child_weight": trial.suggest_float("xgb_min_child_weight", 0.5, 10, log=True),
        "scale_pos_weight": trial.suggest_categorical(
            "xgb_scale_pos_weight", [1.0, float(round(imbalance, 2))]
        ),
    }


@dataclass
class TuningResult:
    """The best family and hyperparameters, and every trial."""

    family: str
    params: dict[str, Any]
    score: float
    trials: list[dict[str, Any]] = field(default_factory=list)


def check_labels(y: pd.Series, part: str) -> None:
    """Training needs both classes; say so plainly when a part lacks one."""
    counts = y.value_counts()
    if len(y) == 0:
        raise DataError(f"the {part} data is empty; ingest more readings or change the split")
    if counts.get(1.0, 0) == 0 or counts.get(0.0, 0) == 0:
        only = "failures" if counts.get(0.0, 0) == 0 else "non-failures"
        raise DataError(
            f"the {part} data has only {only} ({len(y)} readings); a classifier needs both classes — "
            "use more data, a longer period, or split.method: stratified"
        )


def tune(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_val: pd.DataFrame,
    y_val: pd.Series,
    config: TrainingConfig,
    *,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> TuningResult:
    """Search both families with Optuna (TPE, seeded) and keep the best validation PR-AUC."""
    import optuna

    check_labels(y_train, "training")
    check_labels(y_val, "validation")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    families, rolling_window, seed = config.families, config.rolling_window, config.seed
    positive_share = float(y_train.mean())
    records: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", list(families))
        params = suggest_params(trial, family, positive_share)
        model = build_model(family, params, rolling_window=rolling_window, seed=seed).fit(x_train, y_train)
        proba = model.predict_proba(x_val)[:, 1]
        score = float(average_precision_score(y_val, proba))
        record = {"number": trial.number, "family": family, "params": params, "val_pr_auc": score}
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for family in families:  # every family gets at least one trial before TPE takes over
        study.enqueue_trial({"family": family})
    study.optimize(objective, n_trials=config.trials)
    best = records[study.best_trial.number]
    return TuningResult(best["family"], best["params"], best["val_pr_auc"], records)


def choose_threshold(y_true: pd.Series | np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold that maximises F1 on the failure class."""
    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]) if len(thresholds) else 0.5


def metrics(y_true: pd.Series | np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    """Failure-class metrics at the threshold, plus threshold-free ones."""
    y = np.asarray(y_true).astype(int)
    decision = (proba >= threshold).astype(int)
    both_classes = len(np.unique(y)) == 2
    tn, fp, fn, tp = confusion_matrix(y, decision, labels=[0, 1]).ravel()
    return {
        "f1": float(f1_score(y, decision, zero_division=0)),
        "recall": float(recall_score(y, decision, zero_division=0)),
        "precision": float(precision_score(y, decision, zero_division=0)),
        "pr_auc": float(average_precision_score(y, proba)) if both_classes else float("nan"),
        "roc_auc": float(roc_auc_score(y, proba)) if both_classes else float("nan"),
        "brier": float(brier_score_loss(y, proba)),
        "threshold": float(threshold),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
        "readings": len(y),
        "failures": int(y.sum()),
        "pr_curve": _pr_curve(y, proba) if both_classes else None,
    }


def _pr_curve(y: np.ndarray, proba: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The precision–recall curve at `points` recall levels, small enough to keep with the metrics."""
    precision, recall, _ = precision_recall_curve(y, proba)
    grid = np.linspace(0, 1, points)
    order = np.argsort(recall)
    interpolated = np.interp(grid, recall[order], precision[order])
    return {"recall": grid.round(4).tolist(), "precision": interpolated.round(4).tolist()}


def fit_mode_models(x_train: pd.DataFrame, labels: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """One small XGBoost per failure mode, for 'what is likely to fail'."""
    from xgboost import XGBClassifier

    models: dict[str, Any] = {}
    for mode in MODE_TARGETS:
        if mode not in labels.columns:
            continue
        y = labels[mode].fillna(0).astype(int)
        if y.nunique() < 2:
            models[mode] = float(y.mean())  # never (or always) seen: a constant probability
            continue
        models[mode] = Pipeline(
            [
                ("features", PhysicsFeatures()),
                (
                    "model",
                    XGBClassifier(
                        n_estimators=150,
                        max_depth=4,
                        learning_rate=0.1,
                        random_state=seed,
                        n_jobs=-1,
                        tree_method="hist",
                        verbosity=0,
                    ),
                ),
            ]
        ).fit(x_train, y)
    return models


def contributions(model: Pipeline, readings: pd.DataFrame) -> pd.DataFrame:
    """Per-reading contribution of each feature to the failure probability (or log-odds for XGBoost).

    Both families use the path decomposition of each tree (Saabas): the change in the node's
    value at each split on the reading's path, credited to the split's feature. RandomForest:
    the failure share, averaged over trees. XGBoost: the mean margin (xgboost's
    `approx_contribs`), summed over trees. Unlike TreeSHAP it is a table lookup per leaf, which
    is what lets the service explain every answer cheaply (`predmaint.fastpath`).
    """
    features = model.named_steps["features"].transform(readings)
    scaled = model.named_steps["scale"].transform(features)
    names = list(features.columns)
    classifier = model.named_steps["model"]
    if type(classifier).__name__ == "XGBClassifier":
        import xgboost

        booster = classifier.get_booster()
        values = booster.predict(
            xgboost.DMatrix(scaled, feature_names=booster.feature_names),
            pred_contribs=True,
            approx_contribs=True,
        )
        return pd.DataFrame(values[:, :-1], columns=names, index=readings.index)
    total = np.zeros((len(readings), len(names)))
    for tree in classifier.estimators_:
        structure = tree.tree_
        value = structure.value[:, 0, :]
        share = value[:, 1] / np.maximum(value.sum(axis=1), 1e-12)
        parent = np.full(structure.node_count, -1)
        for node in range(structure.node_count):
            for child in (structure.children_left[node], structure.children_right[node]):
                if child >= 0:
                    parent[child] = node
        has_parent = parent >= 0
        delta = np.zeros((structure.node_count, len(names)))
        nodes = np.flatnonzero(has_parent)
        delta[nodes, structure.feature[parent[nodes]]] = share[nodes] - share[parent[nodes]]
        paths = tree.decision_path(scaled.astype(np.float32))
        total += paths @ delta
    return pd.DataFrame(total / len(classifier.estimators_), columns=names, index=readings.index)


def top_contributions(contrib: pd.DataFrame, k: int = 3) -> list[list[dict[str, Any]]]:
    """The k features pushing each prediction hardest towards failure."""
    return top_features(contrib.to_numpy(), list(contrib.columns), k)


def top_features(values: np.ndarray, names: list[str], k: int = 3) -> list[list[dict[str, Any]]]:
    """`top_contributions` of a (readings × features) array whose columns are `names`."""
    order = np.argsort(-values, axis=1)[:, :k]
    return [
        [{"feature": names[j], "contribution": round(float(values[i, j]), 6)} for j in row]
        for i, row in enumerate(order.tolist())
    ]


@dataclass(frozen=True)
class TrainingConfig:
    """The recipe's settings (the `training` section of params.yaml)."""

    horizon: int = 0
    split: str = "time"
    test_fraction: float = 0.2
    validation_fraction: float = 0.2
    trials: int = 20
    families: tuple[str, ...] = FAMILIES
    rolling_window: int = 0
    seed: int = 0


@dataclass
class Trained:
    """A fitted recipe: the model, its threshold, mode models and what it was measured at."""

    model: Pipeline
    threshold: float
    family: str
    params: dict[str, Any]
    mode_models: dict[str, Any]
    validation: dict[str, Any]
    test: dict[str, Any]
    tuning: TuningResult
    reference: pd.DataFrame  # a sample of training readings, kept for drift checks
    # the model's failure probabilities on held-out (test) readings: the prediction-drift reference
    reference_probabilities: np.ndarray | None = None


def fit(
    frame: pd.DataFrame,
    config: TrainingConfig,
    *,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    parts: Any = None,
    with_modes: bool = True,
) -> Trained:
    """Target, leakage-free split, tuning, threshold on validation, metrics on the test part."""
    from predmaint.features import split, target

    if len(frame) == 0:
        raise DataError("the dataset is empty; ingest readings or check the data version")
    y = target(frame, config.horizon)
    parts = parts or split(
        frame,
        y,
        method=config.split,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        horizon=config.horizon,
        seed=config.seed,
    )
    train, val, test = (frame.iloc[p] for p in (parts.train, parts.validation, parts.test))
    y_train, y_val, y_test = (y.iloc[p] for p in (parts.train, parts.validation, parts.test))
    check_labels(y_test, "test")
    tuning = tune(train, y_train, val, y_val, config, on_trial=on_trial)
    model, threshold, validation, mode_models = fit_final(
        train, y_train, val, y_val, tuning.family, tuning.params, config, with_modes=with_modes
    )
    test_proba = model.predict_proba(test)[:, 1]
    test_metrics = metrics(y_test, test_proba, threshold) | rules_ceiling(test, y_test)
    reference = reference_sample(pd.concat([train, val]), config.seed)
    return Trained(
        model=model,
        threshold=threshold,
        family=tuning.family,
        params=tuning.params,
        mode_models=mode_models,
        validation=validation,
        test=test_metrics,
        tuning=tuning,
        reference=reference,
        reference_probabilities=test_proba,
    )


THRESHOLD_FOLDS = 4
RULE_MODES = ("hdf", "pwf", "osf")  # decided by sensor readings alone; TWF and RNF are chance


def rules_ceiling(readings: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Recall and F1 of a perfect HDF/PWF/OSF rule predictor: about the best readings allow."""
    if not set(RULE_MODES) <= set(readings.columns) or y.sum() == 0:
        return {}
    failures = readings[y.to_numpy() == 1]
    recall = float((failures[list(RULE_MODES)].fillna(0).sum(axis=1) > 0).mean())
    return {"rules_ceiling_recall": recall, "rules_ceiling_f1": 2 * recall / (1 + recall)}


def reference_sample(frame: pd.DataFrame, seed: int, size: int = 3000) -> pd.DataFrame:
    """Training readings kept with the model as the drift reference, in their order."""
    positions = np.sort(np.random.default_rng(seed).choice(len(frame), min(len(frame), size), replace=False))
    return frame.iloc[positions]


def fit_final(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_val: pd.DataFrame,
    y_val: pd.Series,
    family: str,
    params: dict[str, Any],
    config: TrainingConfig,
    *,
    with_modes: bool = True,
) -> tuple[Pipeline, float, dict[str, Any], dict[str, Any]]:
    """The final model on train ∪ validation, its threshold from out-of-fold predictions.

    One small validation set gives a noisy threshold (few failures); out-of-fold probabilities
    over all training readings give a steadier one, and the model then learns from all of them.
    Returns the model, the threshold, the out-of-fold metrics and the failure-mode models.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = pd.concat([x_train, x_val])
    y = pd.concat([y_train, y_val])
    folds = StratifiedKFold(THRESHOLD_FOLDS, shuffle=True, random_state=config.seed)
    template = build_model(family, params, rolling_window=config.rolling_window, seed=config.seed)
    oof = cross_val_predict(template, x, y, cv=folds, method="predict_proba")[:, 1]
    threshold = choose_threshold(y, oof)
    model = build_model(family, params, rolling_window=config.rolling_window, seed=config.seed).fit(x, y)
    modes = fit_mode_models(x, x, seed=config.seed) if with_modes else {}
    return model, threshold, metrics(y, oof, threshold), modes


def cross_validate(frame: pd.DataFrame, config: TrainingConfig, folds: int) -> dict[str, Any]:
    """The whole recipe (tuning budget, threshold) evaluated by stratified K-fold cross-validation."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from predmaint.features import Split, target

    if folds < 2:
        raise DataError(f"--cv needs at least 2 folds, got {folds}")
    y = target(frame, config.horizon)
    known = np.flatnonzero(y.notna().to_numpy())
    check_labels(y.iloc[known], "whole")
    results = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    for fold, (rest, test) in enumerate(splitter.split(known, y.iloc[known])):
        rest_idx, test_idx = known[rest], known[test]
        train_idx, val_idx = train_test_split(
            rest_idx,
            test_size=config.validation_fraction,
            stratify=y.iloc[rest_idx],
            random_state=config.seed,
        )
        parts = Split(np.sort(train_idx), np.sort(val_idx), np.sort(test_idx))
        trained = fit(frame, config, parts=parts, with_modes=False)
        log.info("fold %d: %s f1=%.3f", fold, trained.family, trained.test["f1"])
        fold_metrics = {k: v for k, v in trained.test.items() if k != "pr_curve"}
        results.append({"fold": fold, "family": trained.family} | fold_metrics)
    keys = ("f1", "recall", "precision", "pr_auc", "roc_auc", "rules_ceiling_f1")
    means = {key: float(np.mean([r[key] for r in results])) for key in keys if all(key in r for r in results)}
    return means | {"folds": results}
