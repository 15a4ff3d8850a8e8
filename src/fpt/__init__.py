"""fpt: frozen pretrained transformers as universal computation engines.

Take a transformer pretrained on language, freeze its attention and feed-forward
weights, and train only the input layer, output layer, layer norms and position
embeddings on a task that is not language at all.
"""

__version__ = "0.1.0"

from fpt.errors import FptError  # noqa: E402

__all__ = ["FptError", "__version__"]
