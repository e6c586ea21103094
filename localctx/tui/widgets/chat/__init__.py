"""The chat region: transcript, prompt, status line."""
