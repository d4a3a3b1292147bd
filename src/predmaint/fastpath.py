"""A compiled form of a `Bundle` for the request path: the same answers as `predict_readings`, faster.

`predict_readings` (pandas, scikit-learn, XGBoost) is the reference and what the MLflow pyfunc
runs. Per request its cost is overhead, not arithmetic: pandas on one row, scikit-learn's
per-tree Python loop, a DMatrix per call, a thread pool per call. `compile_bundle` removes it:

- input: the parsed columns as they come from validation (numpy arrays and lists, no pandas);
- features: `features.physics_matrix` (numpy) and the fitted scaler's mean and scale;
- trees: treelite's GTIL (compiled C++, one thread) finds the leaf each reading reaches in each
  tree: one call for the classifier, one for all failure-mode models (concatenated);
- everything else is a lookup in arrays computed once at compile time: each node's value (a
  forest's failure share, a booster's margin) and its path contribution (the change in value
  at each split on the way to it, credited to the split's feature). A prediction averages
  (forest) or sums (booster) the values of its leaves; its explanation does the same with their
  contributions — the Saabas decomposition `training.contributions` computes.

A test checks that both give the same probabilities, decisions and top features.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from predmaint.features import physics_matrix
from predmaint.training import MODE_TARGETS, top_features


class NotCompilable(ValueError):
    """The bundle uses something the compiled path does not cover (e.g. rolling features)."""


def _is_xgboost(classifier: Any) -> bool:
    return type(classifier).__name__ == "XGBClassifier"


def _forest_nodes(forest: Any, n_features: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Failure share and path contribution of every node of a scikit-learn forest, per tree."""
    values, contributions = [], []
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
        values.append(share)
        contributions.append(path)
    return values, contributions


def _booster_nodes(model: Any, n_features: int) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Mean margin and path contribution of every node of a treelite-imported booster, per tree.

    A node's mean margin is the hessian-weighted mean of its children's (a leaf's is its value),
    as xgboost computes it for `approx_contribs`. Node ids are treelite's, as `predict_leaf`
    returns them.
    """
    dump = json.loads(model.dump_as_json())
    values, contributions = [], []
    for tree in dump["trees"]:
        nodes = {node["node_id"]: node for node in tree["nodes"]}
        count = max(nodes) + 1
        mean = np.zeros(count)
        for node_id in sorted(nodes, reverse=True):  # children have larger ids than their parent
            node = nodes[node_id]
            if "leaf_value" in node:
                mean[node_id] = node["leaf_value"]
            else:
                left, right = nodes[node["left_child"]], nodes[node["right_child"]]
                mean[node_id] = (
                    mean[left["node_id"]] * left["sum_hess"] + mean[right["node_id"]] * right["sum_hess"]
                ) / node["sum_hess"]
        path = np.zeros((count, n_features))
        for node_id in sorted(nodes):
            node = nodes[node_id]
            if "leaf_value" not in node:
                for child in (node["left_child"], node["right_child"]):
                    path[child] = path[node_id]
                    path[child, node["split_feature_id"]] += mean[child] - mean[node_id]
        values.append(mean)
        contributions.append(path)
    return values, contributions, float(dump["base_scores"][0])


@cache
def _leaf_config() -> Any:
    from treelite.gtil.gtil import GTILConfig

    return GTILConfig(nthread=1, predict_type="leaf_id")


def _predict_leaf(model: Any, matrix: np.ndarray) -> np.ndarray:
    """`treelite.gtil.predict_leaf` on one thread, without building its configuration per call.

    The public function parses a JSON configuration on every call, which costs more than
    finding one reading's leaves; the configuration is the same every time, so it is made once.
    """
    from treelite.gtil.gtil import _predict_impl

    return _predict_impl(model, matrix, config=_leaf_config())


@dataclass
class _Trees:
    """The trees of one or more models, with each node's value (and path contribution) in flat arrays."""

    model: Any  # treelite model holding every tree
    offset: np.ndarray  # first node of each tree in the flat arrays
    value: np.ndarray  # (nodes,)
    contribution: np.ndarray | None  # (nodes, features), for the classifier only
    starts: np.ndarray  # first tree of each model
    base: np.ndarray  # base margin of each model (boosters)
    boosted: bool  # margins summed and squashed (XGBoost) or shares averaged (forest)

    @classmethod
    def build(
        cls,
        models: list[Any],
        values: list[list[np.ndarray]],
        contributions: list[np.ndarray] | None,
        base: list[float],
        boosted: bool,
    ) -> _Trees:
        """Flatten the trees of `models` (treelite) with their per-tree node values."""
        import treelite

        flat = [value for per_model in values for value in per_model]
        sizes = [len(per_model) for per_model in values]
        return cls(
            model=models[0] if len(models) == 1 else treelite.Model.concatenate(models),
            offset=np.cumsum([0] + [len(value) for value in flat[:-1]]).astype(np.intp),
            value=np.concatenate(flat),
            contribution=None if contributions is None else np.concatenate(contributions).astype(np.float32),
            starts=np.cumsum([0] + sizes[:-1]).astype(np.intp),
            base=np.asarray(base),
            boosted=boosted,
        )

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """Flat index of the leaf each row reaches in each tree (rows × trees)."""
        # Both libraries compare float32 inputs with their thresholds; so does this.
        found = _predict_leaf(self.model, matrix.astype(np.float32).astype(np.float64))
        return found.astype(np.intp) + self.offset

    def probabilities(self, leaves: np.ndarray) -> np.ndarray:
        """Failure probability of each row under each model (rows × models)."""
        values = self.value[leaves]
        if not self.boosted:
            return np.add.reduceat(values, self.starts, axis=1) / np.diff(
                np.append(self.starts, values.shape[1])
            )
        margin = np.add.reduceat(values, self.starts, axis=1) + self.base
        return 1.0 / (1.0 + np.exp(-margin))

    def explain(self, leaves: np.ndarray) -> np.ndarray:
        """Each feature's contribution to each row's prediction (rows × features)."""
        assert self.contribution is not None
        picked = self.contribution[leaves]
        return picked.sum(axis=1, dtype=np.float64) if self.boosted else picked.mean(axis=1, dtype=np.float64)


def _model_trees(classifier: Any, n_features: int) -> _Trees:
    import treelite

    if _is_xgboost(classifier):
        model = treelite.frontend.from_xgboost(classifier.get_booster())
        values, contributions, base = _booster_nodes(model, n_features)
        return _Trees.build([model], [values], contributions, [base], boosted=True)
    model = treelite.sklearn.import_model(classifier)
    values, contributions = _forest_nodes(classifier, n_features)
    return _Trees.build([model], [values], contributions, [0.0], boosted=False)


def _mode_trees(models: list[Any]) -> _Trees:
    import treelite

    imported, values, base = [], [], []
    for model in models:
        booster = treelite.frontend.from_xgboost(model.get_booster())
        per_tree, _, margin = _booster_nodes(booster, booster.num_feature)
        imported.append(booster)
        values.append(per_tree)
        base.append(margin)
    return _Trees.build(imported, values, None, base, boosted=True)


class CompiledBundle:
    """`predict(readings)` returns the columns `predict_readings(bundle, readings)` returns."""

    def __init__(self, bundle: Any) -> None:
        """Compile the classifier, its scaler and the mode models of `bundle`."""
        pipeline = bundle.model
        features = pipeline.named_steps["features"]
        if getattr(features, "rolling_window", 0):
            raise NotCompilable("rolling features need a machine's history; served by predict_readings")
        scaler = pipeline.named_steps["scale"]
        self.names = [str(name) for name in features.get_feature_names_out()]
        self.mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros(len(self.names)))
        self.scale = np.asarray(scaler.scale_ if scaler.with_std else np.ones(len(self.names)))
        self.threshold = bundle.threshold
        self.trees = _model_trees(pipeline.named_steps["model"], len(self.names))
        self.constant_modes: dict[str, float] = {}
        tree_modes: dict[str, Any] = {}
        for mode in MODE_TARGETS:
            if mode not in bundle.mode_models:
                continue
            mode_model = bundle.mode_models[mode]
            if isinstance(mode_model, float):
                self.constant_modes[mode] = mode_model
            elif (
                list(mode_model.named_steps) != ["features", "model"]
                or mode_model.named_steps["features"].rolling_window
                or not _is_xgboost(mode_model.named_steps["model"])
            ):
                raise NotCompilable(f"mode model {mode} is not features → XGBoost")
            else:
                tree_modes[mode] = mode_model.named_steps["model"]
        self.mode_order = [mode for mode in MODE_TARGETS if mode in bundle.mode_models]
        self.tree_modes = list(tree_modes)
        self.modes = _mode_trees(list(tree_modes.values())) if tree_modes else None

    def predict(
        self, readings: pd.DataFrame | Mapping[str, Any], *, explain: bool = True, top_k: int = 3
    ) -> dict[str, Any]:
        """Probability, decision, mode probabilities and top reasons (as lists), as `predict_readings`.

        `readings` is a contract DataFrame or the columns of `ingest.parse.parse_columns`.
        """
        raw = physics_matrix(readings)
        leaves = self.trees.leaves((raw - self.mean) / self.scale)
        proba = self.trees.probabilities(leaves)[:, 0]
        out: dict[str, Any] = {
            "failure_probability": proba,
            "failure": (proba >= self.threshold).astype(int),
        }
        mode_probability = self.modes.probabilities(self.modes.leaves(raw)) if self.modes else None
        for mode in self.mode_order:
            if mode in self.constant_modes:
                out[f"p_{mode}"] = np.full(len(raw), self.constant_modes[mode])
            else:
                out[f"p_{mode}"] = mode_probability[:, self.tree_modes.index(mode)]  # type: ignore[index]
        if explain:
            out["top_features"] = top_features(self.trees.explain(leaves), self.names, top_k)
        return out


def compile_bundle(bundle: Any) -> CompiledBundle:
    """Compile a bundle for serving; raises `NotCompilable` when it cannot be."""
    return CompiledBundle(bundle)
