"""Rendering: results in, rich renderables out. Only the CLI prints."""
