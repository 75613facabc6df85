"""Run directories: their files' names in one place (``layout``), the folder itself
(``directory``), the records the loop's events become and their persistence (``records``),
reading runs back (``reading``) and the end-of-run tables (``tables``). Imports the engine and
everything below it."""
