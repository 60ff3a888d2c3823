"""Offline tools: training the regressor, importing a course model, building the
served model files (the Lite0 conversion in ``lite0``), sample data, the demo, and
the in-process bulk scorer."""
