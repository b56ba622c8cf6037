"""fundiff's UNet as a diffusers model: ``ModelMixin`` + ``ConfigMixin``, so ``save_pretrained`` writes
``config.json`` (the :class:`~fundiff.nets.unet.UNetConfig` fields) and ``diffusion_pytorch_model.safetensors`` (the
same parameter names as fundiff's weights), and ``UNetModel.from_pretrained`` / ``DDPMPipeline.from_pretrained`` read
them back. What ``fundiff export`` names in ``model_index.json``.

A module of its own because importing diffusers takes seconds: every other command builds the plain
:class:`~fundiff.nets.unet.UNet`.
"""

from __future__ import annotations

from dataclasses import asdict

from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

from fundiff.nets.unet import UNet, UNetConfig


class UNetModel(UNet, ModelMixin, ConfigMixin):
    """The UNet, built from a :class:`UNetConfig` (``UNetModel(UNetConfig(width=64, ...))``) or from its fields as
    keywords (``UNetModel(width=64, ...)``, what diffusers' ``from_config`` calls). ``net.config`` stays the
    UNetConfig; diffusers' own config dict is ``net._internal_dict``."""

    config_name = "config.json"  # diffusers' ConfigMixin: the file save_config / from_pretrained use
    ignore_for_config = ["config"]  # the positional UNetConfig: its fields are what diffusers records

    def __init__(self, config: UNetConfig | None = None, *, width: int = 64, conditioning: str = "none",
                 time_injection: str = "add", num_classes: int = 10, in_channels: int = 1,
                 image_size: int = 28) -> None:
        if config is None:  # the keyword form (diffusers' from_config); diffusers' private "_..." keys are dropped
            config = UNetConfig(width=width, conditioning=conditioning, time_injection=time_injection,
                                num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        super().__init__(config)
        self.register_to_config(**asdict(config))  # what @register_to_config records (the positional config is none)

    @classmethod
    def from_unet(cls, net: UNet) -> UNetModel:
        """The diffusers model of a trained UNet (the same weights)."""
        model = cls(net.config)
        model.load_state_dict(net.state_dict())
        return model.eval()
