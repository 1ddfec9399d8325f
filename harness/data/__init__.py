"""Datasets: the procedural stimulus world (default) and real-data folders (CIFAR-10, ImageFolder)."""

from harness.data.folders import Cifar10DataModule, ImageFolderDataModule
from harness.data.world import CLASSES, CONCEPTS, World, WorldBatch
from harness.data.world_datamodule import WorldDataModule

__all__ = [
    "CLASSES",
    "CONCEPTS",
    "Cifar10DataModule",
    "ImageFolderDataModule",
    "World",
    "WorldBatch",
    "WorldDataModule",
]
