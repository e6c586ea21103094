"""The context region: "what the model sees" for the last turn."""
