"""tl-driving: object-detection transfer for driving scenes, a tl plugin (torchvision detectors, ultralytics)."""

__version__ = "0.1.0"
