"""Test helpers shared by the test packages and by bench/ (never collected as tests)."""
