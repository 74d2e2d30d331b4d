"""The study's vocabulary: its name, backbones with their family and depth, and how numbers
read in paths."""

from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import NamedTuple

# The name of the study config/config.yaml describes: Toledo et al.'s full grid.
PAPER_STUDY = "paper"


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


def study_name(given: Mapping, configfiles: Iterable[str | PathLike], paper_configfile: str | PathLike) -> str:
    """The study's name, which names its folders results/<study>/ and logs/<study>/
    (docs/design.md §7): `study` when the configuration `given` (the config files and
    --config of the command line) sets it; else the stems of the config files given, joined
    by "+" (config/demo.yaml: "demo"), `paper_configfile` counting as "paper"; with no config
    file given, "paper"."""
    if given.get("study") is not None:
        return str(given["study"])
    paper = Path(paper_configfile).resolve()
    names = [PAPER_STUDY if Path(f).resolve() == paper else Path(f).stem for f in configfiles]
    return "+".join(names) or PAPER_STUDY
