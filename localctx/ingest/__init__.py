"""Walk, chunk and index a repository into archival memory; build the repo digest.

Never imports the TUI.
"""
