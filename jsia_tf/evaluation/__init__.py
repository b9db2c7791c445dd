"""Evaluation protocols of SYSU-MM01 and RegDB, in pure numpy (no TensorFlow needed)."""
