"""The ground floor: what every other package uses and nothing here depends on. Errors, the
name registry, time points (``200it``, ``0.25ep``), files written whole and never through a link,
the machine's cores and memory, numbers as text. Imports nothing of incop."""
