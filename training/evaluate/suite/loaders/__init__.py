"""Built-in loaders for the visible evaluation tasks, each following its data README."""
