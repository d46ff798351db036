"""Runnable examples: ``ripple serve --app examples.todo:setup``."""
