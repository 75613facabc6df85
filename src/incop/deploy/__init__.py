"""After the search: exporting a pruned network (``export``), running it sparse on a CPU
(``sparse_inference``, with incop's own C kernel in ``csr_tiled``), and ``incop speed``
(``timing``). Imports the runs, reports and everything below them."""
