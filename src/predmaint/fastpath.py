"""A compiled form of a `Bundle` for the request path: the same answers as `predict_readings`, faster.

`predict_readings` (pandas, scikit-learn, XGBoost) is the reference and what the MLflow pyfunc
runs. Per request its cost is overhead, not arithmetic: pandas on one row, scikit-learn's
per-tree Python loop, a DMatrix per call, a thread pool per call. `compile_bundle` removes it:

- features: `features.physics_matrix` (numpy) and the fitted scaler's mean and scale;
- trees: treelite's GTIL (compiled C++) on one thread, for the classifier and the mode models;
- RandomForest contributions: the path decomposition of each leaf is computed once at compile
  time, so a prediction only looks up the leaves it reached (`predict_leaf`) and averages;
- XGBoost contributions: exact TreeSHAP from the booster, as in the reference.

A test checks that both give the same probabilities, decisions and top features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from predmaint.features import physics_matrix
from predmaint.training import MODE_TARGETS, top_contributions


class NotCompilable(ValueError):
    """The bundle uses something the compiled path does not cover (e.g. rolling features)."""


def _is_xgboost(classifier: Any) -> bool:
    return type(classifier).__name__ == "XGBClassifier"


def _single_thread_xgboost(classifier: Any) -> Any:
    booster = classifier.get_booster()
    booster.set_param({"nthread": 1})
    return booster


def _treelite(classifier: Any) -> Any:
    import treelite

    if _is_xgboost(classifier):
        return treelite.frontend.from_xgboost(classifier.get_booster())
    return treelite.sklearn.import_model(classifier)


@dataclass
class _ForestPaths:
    """All trees' nodes in one array: failure share and path contribution of each node."""

    offset: np.ndarray  # first node of each tree
    share: np.ndarray  # (nodes,)
    contribution: np.ndarray  # (nodes, features)


def _forest_paths(forest: Any, n_features: int) -> _ForestPaths:
    shares, contributions = [], []
    for estimator in forest.estimators_:
        tree = estimator.tree_
        value = tree.value[:, 0, :]
        share = value[:, 1] / np.maximum(value.sum(axis=1), 1e-12)
        path = np.zeros((tree.node_count, n_features))
        for node in range(tree.node_count):  # parents come before children in scikit-learn's order
            for child in (tree.children_left[node], tree.children_right[node]):
                if child >= 0:
                    path[child] = path[node]
                    path[child, tree.feature[node]] += share[child] - share[node]
        shares.append(share)
        contributions.append(path.astype(np.float32))
    offset = np.cumsum([0] + [len(share) for share in shares[:-1]])
    return _ForestPaths(offset, np.concatenate(shares), np.concatenate(contributions))


class CompiledBundle:
    """`predict(readings)` returns what `predict_readings(bundle, readings)` returns."""

    def __init__(self, bundle: Any) -> None:
        """Compile the classifier, its scaler and the mode models of `bundle`."""
        import treelite.gtil

        self._gtil = treelite.gtil
        pipeline = bundle.model
        features = pipeline.named_steps["features"]
        if getattr(features, "rolling_window", 0):
            raise NotCompilable("rolling features need a machine's history; served by predict_readings")
        scaler = pipeline.named_steps["scale"]
        self.names = list(features.get_feature_names_out())
        self.mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(len(self.names)))
        self.scale = np.asarray(scaler.scale_ if scaler.with_std else np.ones(len(self.names)))
        self.threshold = bundle.threshold
        classifier = pipeline.named_steps["model"]
        self.xgboost = _is_xgboost(classifier)
        self.model = _treelite(classifier)
        if self.xgboost:
            self.booster = _single_thread_xgboost(classifier)
        else:
            self.paths = _forest_paths(classifier, len(self.names))
        self.modes: dict[str, Any] = {}
        for mode in MODE_TARGETS:
            if mode not in bundle.mode_models:
                continue
            mode_model = bundle.mode_models[mode]
            if isinstance(mode_model, float):
                self.modes[mode] = mode_model
            elif (
                list(mode_model.named_steps) != ["features", "model"]
                or mode_model.named_steps["features"].rolling_window
            ):
                raise NotCompilable(f"mode model {mode} is not features → trees")
            else:
                self.modes[mode] = _treelite(mode_model.named_steps["model"])

    def _predict_trees(self, model: Any, matrix: np.ndarray) -> np.ndarray:
        out = self._gtil.predict(model, matrix, nthread=1)
        return out.reshape(len(matrix), -1)[:, -1]  # the failure class

    def predict(self, readings: pd.DataFrame, *, explain: bool = True, top_k: int = 3) -> pd.DataFrame:
        """Probability, decision, mode probabilities and top reasons, as `predict_readings`."""
        raw = physics_matrix(readings)
        scaled = (raw - self.mean) / self.scale
        if self.xgboost:
            proba = self._predict_trees(self.model, scaled.astype(np.float32))
        else:
            # scikit-learn compares float32 inputs with its thresholds; so does this.
            leaves = self._gtil.predict_leaf(
                self.model, scaled.astype(np.float32).astype(np.float64), nthread=1
            )
            leaves = leaves.astype(np.intp) + self.paths.offset
            proba = self.paths.share[leaves].mean(axis=1)
        columns: dict[str, Any] = {
            "failure_probability": proba,
            "failure": (proba >= self.threshold).astype(int),
        }
        raw32 = raw.astype(np.float32)
        for mode, model in self.modes.items():
            columns[f"p_{mode}"] = (
                np.full(len(raw), model) if isinstance(model, float) else self._predict_trees(model, raw32)
            )
        if explain:
            if self.xgboost:
                import xgboost

                matrix = xgboost.DMatrix(
                    scaled.astype(np.float32), feature_names=self.booster.feature_names, nthread=1
                )
                values = self.booster.predict(matrix, pred_contribs=True)[:, :-1]
            else:
                values = self.paths.contribution[leaves].mean(axis=1, dtype=np.float64)
            reasons = top_contributions(pd.DataFrame(values, columns=self.names), k=top_k)
            columns["top_features"] = [json.dumps(r) for r in reasons]
        return pd.DataFrame(columns, index=readings.index)


def compile_bundle(bundle: Any) -> CompiledBundle:
    """Compile a bundle for serving; raises `NotCompilable` when it cannot be."""
    return CompiledBundle(bundle)
