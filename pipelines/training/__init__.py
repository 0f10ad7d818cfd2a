"""Training: PISA + GIRL fine-tuning on Ray Train from the preprocess job's Parquet dataset."""
