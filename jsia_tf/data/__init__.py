"""Data: the generated data set, readers, TFRecords and input pipelines."""
