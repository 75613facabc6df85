"""The engine: the IMP loop of docs/methods.md, "The loop" (``imp``), training with checks
(``training``), learning-rate schedules, precision and device, a trial's inputs, and the checks
that the dense network learned or diverged. It tells observers what happened and writes no
file itself. Imports the packages below it: base, data, models, pruning, stopping, config."""
