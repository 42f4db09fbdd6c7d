"""Run records: the per-phase metrics files, live MLflow logging and the MLflow import (``calql track``)."""
