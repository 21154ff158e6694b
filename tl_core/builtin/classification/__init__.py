"""Image classification, the core's own task, as a plugin package like the domains': ImageNet backbones, linear
and MLP heads, image-folder and image-CSV data, the vision recipes, model assembly, training on the core's one
path, metrics, and scoring a finished run (``tl evaluate``)."""
