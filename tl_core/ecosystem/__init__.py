"""Backbones by name from the libraries of the field (issue 14): ``timm:NAME``, ``torchvision:NAME`` and
``hf:ID[@REVISION]`` each build a :class:`~tl_core.components.BackboneSpec` from the library's own metadata - the
pooled features, the layer groups stem first, the input and its preprocessing, the weights entries.

One module per library - :mod:`~tl_core.ecosystem.timm_models` (``group_matcher``, ``pretrained_cfg``, the tag's hub
file), :mod:`~tl_core.ecosystem.torchvision_models` (the weights enum, its hash prefixes and ``transforms()``, the
stages) and :mod:`~tl_core.ecosystem.hf_models` (``AutoModel``, ``from_pretrained``, the image processor) - the
stage groups the last two share (:mod:`~tl_core.ecosystem.stages`), and ``tl backbones --search``
(:mod:`~tl_core.ecosystem.search`).

``backbone.weights: none`` builds a model from its config, with nothing downloaded (what the tests do). The
registry resolves a prefixed name the first time it is asked for one (:meth:`tl_core.registry.Registry.get`); the
library is imported then, never by ``tl plugins`` or the listings.
"""
