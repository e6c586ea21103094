"""Screens: chat (the main one), memory, help, and the first-start model pull."""
