"""DomainClassifier: the domain feature extractor for classifier-FD, classifier score and mode coverage.

For the GenerativeEvaluator:

    classifier = load_classifier(model_artifact)  # or its URI
    outputs = classifier(images)  # float32 [N, H, W, C] in [0, 1]
    outputs["features"], outputs["probabilities"]  # numpy float32 [N, 128], [N, num_classes]
    describe(model_artifact)  # {"test_accuracy", "min_accuracy", "trustworthy", ...}

Names are imported lazily, so importing the package does not load TensorFlow or TFX.
"""

__all__ = ["DomainClassifier", "load_classifier", "describe", "reusable"]


def __getattr__(name):
    if name == "DomainClassifier":
        from components.domain_classifier.component import DomainClassifier

        return DomainClassifier
    if name == "load_classifier":
        from components.domain_classifier.model import load_classifier

        return load_classifier
    if name in ("describe", "reusable"):
        from components.domain_classifier import executor

        return getattr(executor, name)
    raise AttributeError(name)
