"""Image-quality metrics of the GenerativeEvaluator, per image, for images in [0, 1].

PSNR of two identical images is infinite; it is capped at PSNR_CAP_DB so that means and
JSON stay finite (an exact reconstruction reports 100 dB).
"""
import numpy as np
import tensorflow as tf

PSNR_CAP_DB = 100.0
_EPS = 1e-7

# Whether a larger value of a metric means a better model (used for baseline comparison).
HIGHER_IS_BETTER = {
    "psnr_db": True,
    "ssim": True,
    "psnr_gain_db": True,
    "mse": False,
    "bce": False,
}


def mse(reference: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Mean squared error per image, [N, H, W, C] -> [N]."""
    diff = np.asarray(reference, np.float64) - np.asarray(images, np.float64)
    return np.mean(np.square(diff).reshape(len(diff), -1), axis=1)


def bce(reference: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Pixel-mean binary cross-entropy per image of predictions against targets in [0, 1]."""
    y = np.asarray(reference, np.float64).reshape(len(reference), -1)
    p = np.clip(np.asarray(predictions, np.float64).reshape(len(predictions), -1), _EPS, 1 - _EPS)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1)


def psnr(reference: np.ndarray, images: np.ndarray, max_val: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image, capped at PSNR_CAP_DB."""
    errors = mse(reference, images)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(max_val**2 / errors)
    return np.minimum(values, PSNR_CAP_DB)


def ssim(reference: np.ndarray, images: np.ndarray, max_val: float = 1.0) -> np.ndarray:
    """Structural similarity per image (tf.image.ssim, 11x11 Gaussian window)."""
    return tf.image.ssim(
        tf.convert_to_tensor(reference, tf.float32), tf.convert_to_tensor(images, tf.float32), max_val=max_val
    ).numpy().astype(np.float64)


def mean_filter(images: np.ndarray, size: int = 3) -> np.ndarray:
    """A size x size box filter (edge-padded): the trivial denoiser to beat."""
    images = tf.convert_to_tensor(images, tf.float32)
    pad = size // 2
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(padded, size, strides=1, padding="VALID").numpy()


def reconstruction_metrics(clean, reconstruction, noisy=None) -> dict:
    """Per-image metric arrays for one batch: reconstruction quality and, with noisy input, the gain."""
    result = {
        "mse": mse(clean, reconstruction),
        "bce": bce(clean, reconstruction),
        "psnr_db": psnr(clean, reconstruction),
        "ssim": ssim(clean, reconstruction),
    }
    if noisy is not None:
        result["noisy_psnr_db"] = psnr(clean, noisy)
        result["noisy_ssim"] = ssim(clean, noisy)
        result["psnr_gain_db"] = result["psnr_db"] - result["noisy_psnr_db"]
        result["mean_filter_psnr_db"] = psnr(clean, mean_filter(noisy))
        result["mean_filter_gain_db"] = result["mean_filter_psnr_db"] - result["noisy_psnr_db"]
    return result
