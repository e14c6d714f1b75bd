"""phi3tui: fine-tune Phi-3 with mlx-lm from the keyboard, over SSH."""

__version__ = "0.1.0"
