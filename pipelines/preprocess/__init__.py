"""Subject Highlight Preprocessing (docs/method.md, section 5) of video corpora on Ray Data into Parquet."""
