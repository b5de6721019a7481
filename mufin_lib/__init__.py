"""mufin-kit: the shared library behind the notebooks (one place where logic lives)."""
__version__ = "0.1.0"
