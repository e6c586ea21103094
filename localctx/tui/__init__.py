"""The Textual app: screens, widgets, workers. The only package that imports Textual."""
