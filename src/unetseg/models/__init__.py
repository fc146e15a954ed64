"""Models: the classic U-Net and a factory over segmentation_models_pytorch."""

from unetseg.models.factory import create_model, load_encoder_weights, output_stride
from unetseg.models.unet import UNet

__all__ = ["UNet", "create_model", "load_encoder_weights", "output_stride"]
