"""Results stage of calql-repro: aggregation, statistics, figures and tables.

Run ``python -m analysis --help``. Modules, one job each: :mod:`analysis.runs` (find and load
run files), :mod:`analysis.metrics` (per-run regret, dip, scores), :mod:`analysis.aggregate`
(tidy summary tables), :mod:`analysis.stats` (mean +- SE, IQM, stratified bootstrap),
:mod:`analysis.plots`, :mod:`analysis.tables`, :mod:`analysis.config` (the ``analysis``
config section).
"""
