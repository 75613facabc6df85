"""Running many configurations: one job (``jobs``), a sweep's grid (``grid``), the local and
Slurm launchers (``local``, ``slurm``) and their registry (``launchers``). Imports the engine,
the runs and everything below them."""
