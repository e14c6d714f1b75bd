"""The headless engine. Never imports textual: every feature works from here, for the CLI and tests."""
