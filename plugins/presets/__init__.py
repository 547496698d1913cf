"""Built-in presets plugins."""
