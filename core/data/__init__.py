"""Data sources: images, videos, synthetic generators (each in its own module)."""
