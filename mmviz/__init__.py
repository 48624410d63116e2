"""mmviz: a live diagnostic dashboard for modality imbalance in multimodal deep learning."""

__version__ = "0.1.0"
