"""Static vs. dynamic units (dissertation chapter 3, methods.md section 1)."""
