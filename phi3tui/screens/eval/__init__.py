"""Evaluate (from Chat, ^o): left vs right per metric, run on the app's model worker thread."""
