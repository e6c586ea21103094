"""localctx: long-context chat over a whole codebase on consumer hardware, through llama.cpp."""

__version__ = "0.1.0"
