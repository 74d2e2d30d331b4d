"""The study's vocabulary: backbones with their family and depth, and how numbers read in paths."""

from typing import NamedTuple


class Backbone(NamedTuple):
    family: str  # VGG, ResNet, EfficientNet
    depth: str  # "short" or "long" (the paper's ls)
    short: str  # label in the paper's figures


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG", "short", "V16"),
    "vgg19": Backbone("VGG", "long", "V19"),
    "resnet18": Backbone("ResNet", "short", "R18"),
    "resnet50": Backbone("ResNet", "long", "R50"),
    "efficientnetb0": Backbone("EfficientNet", "short", "B0"),
    "efficientnetb5": Backbone("EfficientNet", "long", "B5"),
}

# The order of the paper's figures: B0, B5, R18, R50, V16, V19.
FIGURE_ORDER = ["efficientnetb0", "efficientnetb5", "resnet18", "resnet50", "vgg16", "vgg19"]


def format_number(x: float) -> str:
    """The text of a learning rate or L2 strength in a path; `float(text) == x` exactly."""
    return repr(float(x))
