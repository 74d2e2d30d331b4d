"""What segmentation_models_pytorch needs to build the study's U-Nets: torchvision imported
where its compiled operators cannot load (`import_torchvision`), and segmentation-models'
EfficientNet encoders, registered with smp as `unetcap-efficientnet-b0` and `-b5` (smp's
documented way to add an encoder). Imports torch and smp only (inside functions), nothing of
unetcap: benchmarks/gpu_throughput.py loads this file on a GPU node without the package.

smp's own EfficientNet encoder gives the decoder the output of the last block of each
stage (B0: 32, 24, 40, 112 and 320 channels) and leaves the network's head convolution
unused. segmentation-models (the TensorFlow backend, the paper's) gives it the expanded
activation of the first block of each downsampling stage (block2a/3a/4a/6a_expand_activation:
96, 144, 240, 672 channels for B0) and the head's activation (top_activation: 1280), so its
decoder is wider: 10.1 M parameters for B0 against smp's 6.3 M. This encoder takes the same
features from smp's EfficientNet (the same blocks, drop-connect and BatchNorm), so that the
two backends train U-Nets of the same capacity.
"""

from __future__ import annotations

# smp's EfficientNet variants this module mirrors: segmentation-models' backbone -> smp's name
VARIANTS = {"efficientnetb0": "efficientnet-b0", "efficientnetb5": "efficientnet-b5"}
PREFIX = "unetcap-"
# segmentation-models' encoder (the study's backbone) -> the smp encoder that builds it
ENCODERS = {
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    **{backbone: PREFIX + name for backbone, name in VARIANTS.items()},
}


# The operators torchvision's Python code registers fakes for whatever it loaded.
TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_libraries: list = []  # the placeholder definitions, kept alive


def import_torchvision():
    """torchvision, also where its compiled operators cannot load. smp's ResNet and VGG
    encoders are torchvision's model classes (pure Python); the registry has torchvision only
    as a CUDA build, whose operator library needs CUDA's torch and does not load beside the
    CPU build setup.sh installs, and torchvision then fails on import, registering a fake of
    its `nms` operator that was never defined. Here the two operators it names are defined
    (never called: the U-Nets use no detection operator) and torchvision imported again. Where
    torchvision's operators load (a GPU node with CUDA's torch), nothing is defined."""
    import sys

    import torch

    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in TORCHVISION_OPS:
            library.define(schema)
        _libraries.append(library)
        import torchvision
    return torchvision


def import_smp():
    """segmentation_models_pytorch, torchvision imported first (`import_torchvision`) and the
    encoders of this module registered."""
    import_torchvision()
    import segmentation_models_pytorch as smp

    register(smp.encoders.encoders)
    return smp


def register(encoders: dict) -> None:
    """Add the encoders to smp's registry (`smp.encoders.encoders`), once."""
    from segmentation_models_pytorch.encoders.efficientnet import EfficientNetEncoder

    class KerasFeaturesEfficientNet(EfficientNetEncoder):
        """smp's EfficientNet giving segmentation-models' features (see the module's text)."""

        def __init__(self, model_name: str, depth: int = 5, output_stride: int = 32):
            super().__init__([], [], model_name, depth=depth, output_stride=output_stride)
            # the blocks that downsample (stride 2): their expanded input is a skip feature
            self._skips = [i for i, b in enumerate(self._blocks) if _stride(b) == 2]
            self._out_channels = [
                3,
                *(self._blocks[i]._expand_conv.out_channels for i in self._skips),
                self._conv_head.out_channels,
            ]
            self._captured: list = []
            for i in self._skips:
                self._blocks[i]._depthwise_conv.register_forward_pre_hook(self._capture)

        def _capture(self, module, inputs) -> None:
            self._captured.append(inputs[0])

        def forward(self, x):
            self._captured = []
            features = [x]
            x = self._swish(self._bn0(self._conv_stem(x)))
            for i, block in enumerate(self._blocks):
                x = block(x, self._drop_connect_rate * i / len(self._blocks))
            x = self._swish(self._bn1(self._conv_head(x)))
            features += [*self._captured, x]
            self._captured = []
            return features

    for smp_name in VARIANTS.values():
        encoders.setdefault(
            PREFIX + smp_name,
            {"encoder": KerasFeaturesEfficientNet, "pretrained_settings": {}, "params": {"model_name": smp_name}},
        )


def _stride(block) -> int:
    stride = block._depthwise_conv.stride
    return stride[0] if isinstance(stride, (list, tuple)) else int(stride)
