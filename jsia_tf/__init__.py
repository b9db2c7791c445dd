"""jsia_tf: JSIA-ReID (cross-modality paired-image generation and augmentation for
RGB-infrared person re-identification) in TensorFlow 2 / Keras 3."""

__version__ = "0.1.0"
