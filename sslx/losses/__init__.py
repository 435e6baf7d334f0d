"""Loss functions: pure, jittable, importable without the trainer."""
