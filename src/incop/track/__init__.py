"""Experiment trackers that follow a run as it goes, as observers of the IMP loop: TensorBoard
(``tensorboard``) and Weights & Biases (``wandb``), logging the same values (``scalars``). A new
tracker is one more module here and one line in ``incop.launch.session.trackers``. Imports
``incop.runs`` and everything below it."""
