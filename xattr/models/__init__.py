"""Classifier zoo: every model takes ``[0,1]`` images, normalises inside and carries a ``ModelSpec``.

``build_model(name, pretrained=..., checkpoint=...)`` is the ``_target_`` of ``conf/model/*.yaml``.
Models live in a registry (``xattr.models.registry``), one module per weight source: ``_torchvision``
(vgg16, resnet50, efficientnet_b0), ``_timm`` (vit_b16, deit_b16, swin_b) and ``tiny`` (tiny_cnn,
tiny_vit, trained here). Pretrained weights come from each library's own mechanism (torchvision weight
enums, timm tags); offline with nothing cached, the error is one line naming the cache folder and the
alternatives. Checkpoints are read by ``xattr.models.checkpoint``.

Text-to-image diffusion backbones (``sd21``, ``sd15``, ``tiny_t2i``) are a second kind of model with a
registry of their own (:data:`TEXT_TO_IMAGE_MODELS`): ``build_text_to_image_model`` (the ``_target_`` of
their configs) reads a diffusers pipeline folder with ``load_pipeline_folder`` into a ``TextToImageModel``
(``text_to_image``); ``tiny_t2i`` builds the small pipeline trained here. ``spec.kind`` tells the two kinds
apart (``"classifier"`` / ``"text_to_image"``). diffusers is imported only when such a model is built.
"""

from __future__ import annotations

from xattr.models import _timm, _torchvision, tiny  # noqa: F401  (importing them registers their models)
from xattr.models.checkpoint import load_state_dict
from xattr.models.registry import OURS, build_model, list_models, model_entry, register_model
from xattr.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Normalize, ZooModel
from xattr.models.text_to_image import (
    TEXT_TO_IMAGE_MODELS,
    TextToImageModel,
    TextToImageSpec,
    build_text_to_image_model,
    load_pipeline_folder,
    logsnr_to_timestep,
    timestep_to_logsnr,
)
from xattr.models.tiny import TinyCNN, tiny_vit
from xattr.models.tiny_t2i import build_tiny_t2i_pipeline, build_word_tokenizer, save_pipeline_folder

#: every registered model, in the zoo's order
MODEL_NAMES = list_models()
#: the models trained here (source ``ours``): no library weights, ``pretrained`` is ignored
OFFLINE_MODELS = list_models(source=OURS)

__all__ = ["ModelSpec", "Normalize", "ZooModel", "build_model", "MODEL_NAMES", "OFFLINE_MODELS", "list_models",
           "model_entry", "register_model", "load_state_dict", "IMAGENET_MEAN", "IMAGENET_STD", "TinyCNN", "tiny_vit",
           "TEXT_TO_IMAGE_MODELS", "TextToImageModel", "TextToImageSpec", "build_text_to_image_model",
           "load_pipeline_folder", "logsnr_to_timestep", "timestep_to_logsnr", "build_tiny_t2i_pipeline",
           "build_word_tokenizer", "save_pipeline_folder"]
