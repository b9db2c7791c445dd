"""Training: the experiment config, distribution strategies, the train step and loop."""
