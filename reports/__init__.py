"""Static HTML reports under ``<data>/reports/``, built on one page/figure/table kit."""
