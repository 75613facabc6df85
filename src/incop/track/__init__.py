"""Experiment trackers that follow a run as it goes: TensorBoard (``tensorboard``). Imports
``incop.runs`` and everything below it."""
