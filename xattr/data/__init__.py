"""Datasets; every sample is a dict (see ``xattr.data.base``). Each class registers in ``xattr.data.registry``."""

from xattr.data.aro import (
           AROCOCOOrderDataset,
           AROFlickrOrderDataset,
           AROVGAttributionDataset,
           AROVGRelationDataset,
)
from xattr.data.base import AttributionDataset, boxes_to_mask, collate, mask_to_box
from xattr.data.coco import COCO100ITDataset, COCOITDataset
from xattr.data.digits import DigitsDataset
from xattr.data.flowers102 import Flowers102Dataset
from xattr.data.folder import FolderDataset
from xattr.data.fss1000 import FSS1000Dataset
from xattr.data.imagenet import ImageNetADataset, ImageNetDataset, ImageNetRDataset
from xattr.data.oxford_pet import OxfordPetDataset
from xattr.data.registry import dataset_class, list_datasets, register_dataset
from xattr.data.shapes import ShapesDataset
from xattr.data.shapes_captions import ShapesCaptionsDataset

#: datasets whose samples ship with the code: no files needed, an offline classifier trains on them
BUILTIN_DATASETS = list_datasets(builtin=True)

__all__ = ["AttributionDataset", "ShapesDataset", "ShapesCaptionsDataset", "DigitsDataset", "ImageNetDataset",
           "ImageNetADataset", "ImageNetRDataset", "FSS1000Dataset", "OxfordPetDataset", "Flowers102Dataset", "FolderDataset", "COCOITDataset",
           "COCO100ITDataset", "AROVGRelationDataset", "AROVGAttributionDataset", "AROCOCOOrderDataset",
           "AROFlickrOrderDataset", "collate", "boxes_to_mask", "mask_to_box", "BUILTIN_DATASETS", "dataset_class",
           "list_datasets", "register_dataset"]
