"""Downscaling models: training data, the four learners, freezing, fast inference, uncertainty, metrics."""
