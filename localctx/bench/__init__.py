"""Benchmark bodies behind `localctx bench …`: measured figures, never asserted in tests."""
