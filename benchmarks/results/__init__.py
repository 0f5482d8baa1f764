"""The results pages' benchmark (``benchmarks/results_table.py``), one job per module: ``experiments``
(the rows, ablations, published numbers and settings, as data), ``runner`` (renders the draws, trains
and scores each row through ``dfdgen``, reusing finished runs) and ``report`` (the Markdown page, its
claims, figure and provenance)."""
