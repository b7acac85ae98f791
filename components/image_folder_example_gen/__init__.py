"""A custom TFX ExampleGen for a folder of images: square RGB PNG crops in `train`/`eval`, with accounted rejects.

The content images of the fast style-transfer pipeline (any JPEG/PNG photos, e.g. COCO). The
component class is imported lazily so that `sources` (listing, fingerprints) stays cheap to
import for the CLI.
"""
from components.image_folder_example_gen.sources import ImageFolderDataError, check_input, input_fingerprint

__all__ = ["ImageFolderDataError", "ImageFolderExampleGen", "check_input", "input_fingerprint"]


def __getattr__(name):
    if name == "ImageFolderExampleGen":
        from components.image_folder_example_gen import component

        return component.ImageFolderExampleGen
    raise AttributeError(name)
