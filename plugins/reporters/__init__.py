"""Built-in reporters plugins."""
