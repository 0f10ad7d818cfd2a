"""Subject Highlight Preprocessing (SPEC section 5) of video corpora on Ray Data into Parquet."""
