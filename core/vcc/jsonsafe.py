"""Kept for old imports: the NaN-to-null helpers live in :mod:`core.jsonsafe`."""

from core.jsonsafe import nan_to_null, null_to_nan

__all__ = ["nan_to_null", "null_to_nan"]
