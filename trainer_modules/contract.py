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

# CelebA faces (list_attr_celeba.txt order; the file holds -1/1, the Examples 0/1).
ATTRIBUTES_KEY = "attributes"  # int64 [40], 1 where the attribute holds, in CELEBA_ATTRIBUTES order
LANDMARKS_KEY = "landmarks"  # float [10]: (x, y) of left eye, right eye, nose, left and right mouth corner,
#                              in pixels of the 64x64 output image
IMAGE_ID_KEY = "image_id"  # bytes, the source file name (e.g. 000001.jpg)
CELEBA_SIZE = 64
CELEBA_SHAPE = (CELEBA_SIZE, CELEBA_SIZE, 3)
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
CELEBA_LANDMARKS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
