"""Models: the classic U-Net and a factory over segmentation_models_pytorch."""

from .factory import create_model, load_encoder_weights, output_stride
from .unet import UNet

__all__ = ["UNet", "create_model", "load_encoder_weights", "output_stride"]
