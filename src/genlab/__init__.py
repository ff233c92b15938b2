"""genlab: a laboratory for generative AI in PyTorch."""

__version__ = "0.1.0"
