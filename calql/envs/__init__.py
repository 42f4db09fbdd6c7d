"""Environments for online fine-tuning and evaluation, made from the same task spec as the data."""
