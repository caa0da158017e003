"""Evaluation: retrieval, knowledge-graph and ranking metrics, each measured beside its baselines."""
