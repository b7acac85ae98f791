"""The data contract of DESIGN.md: one source of truth for feature keys, splits and shapes.

Every layer (ExampleGen, Transform, Trainer modules, GenerativeEvaluator, serving)
imports these names instead of spelling the strings again.
"""

# tf.Example features written by every ExampleGen.
IMAGE_KEY = "image"  # losslessly encoded PNG bytes
LABEL_KEY = "label"  # int64 class id, where the source has labels

# Features added by Transform.
NOISY_IMAGE_KEY = "image_noisy"  # float32 [H, W, C] in [0, 1], training-data noise only

# Split names.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
TEST_SPLIT = "test"

# MNIST-family geometry.
MNIST_HEIGHT = 28
MNIST_WIDTH = 28
MNIST_CHANNELS = 1
MNIST_SHAPE = (MNIST_HEIGHT, MNIST_WIDTH, MNIST_CHANNELS)
MNIST_NUM_CLASSES = 10

# Default Gaussian noise for the denoising family.
DEFAULT_NOISE_FACTOR = 0.5
