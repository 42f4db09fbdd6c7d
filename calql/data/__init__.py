"""Offline datasets: one on-disk format, several sources, Monte-Carlo return labeling."""

from calql.data.format import Dataset, load_dataset, save_dataset

__all__ = ["Dataset", "load_dataset", "save_dataset"]
