"""tl-medical: transfer learning for medical imaging, a tl plugin built on MONAI."""

__version__ = "0.1.0"
