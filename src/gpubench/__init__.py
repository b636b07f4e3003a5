"""gpubench: measure what a GPU delivers, and carry it to what a training run costs."""

__version__ = "0.1.0"
