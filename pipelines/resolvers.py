"""Resolver strategies that reach artifacts of earlier runs through ML Metadata."""
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.types import artifact_utils


def _custom(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


class LatestDomainClassifierStrategy(resolver.ResolverStrategy):
    """The newest LIVE domain classifiers trained on the same data with the same classifier code.

    Searches every Model in the metadata store, not only this pipeline's, so all pipelines
    that share a store (the local default: one `runs/metadata.sqlite`) train the classifier
    of a dataset once. Matching is on the `data_fingerprint` (ExampleGen's input fingerprint)
    and `classifier_config` (classifier code and settings) custom properties that the
    DomainClassifier component records. Resolves to up to MAX_CANDIDATES of them, oldest first
    (the DomainClassifier's `reusable` picks the newest whose example counts match), or to an
    empty list when none matches.
    """

    MAX_CANDIDATES = 5

    def __init__(self, data_fingerprint: str, classifier_config: str):
        self._data_fingerprint = data_fingerprint
        self._classifier_config = classifier_config

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]) -> Optional[Dict[str, List[types.Artifact]]]:
        if len(input_dict) != 1:
            raise ValueError(f"LatestDomainClassifierStrategy takes one Model channel, got {sorted(input_dict)}")
        key = next(iter(input_dict))
        if not self._data_fingerprint:
            return {key: []}
        try:
            model_type = store.get_artifact_type(types.standard_artifacts.Model.TYPE_NAME)
        except Exception:  # no Model type registered yet: nothing was ever trained in this store
            return {key: []}
        matches = [
            a for a in store.get_artifacts_by_type(model_type.name)
            if a.state == metadata_store_pb2.Artifact.LIVE
            and _custom(a, "data_fingerprint") == self._data_fingerprint
            and _custom(a, "classifier_config") == self._classifier_config
        ]
        if not matches:
            return {key: []}
        newest = sorted(matches, key=lambda a: (a.create_time_since_epoch, a.id))[-self.MAX_CANDIDATES:]
        return {key: [artifact_utils.deserialize_artifact(model_type, a) for a in newest]}
