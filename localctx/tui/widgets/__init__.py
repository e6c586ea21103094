"""Widgets, grouped by the screen region they live in: chat/, gauge/, context/."""
