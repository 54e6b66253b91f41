"""The names of the example images that ship with scikit-image (no heavy imports: the command
line's parser reads them without importing torch)."""

__all__ = ["EXAMPLES"]

#: Example images that ship with scikit-image and load offline.
EXAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "horse")
