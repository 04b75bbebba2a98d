"""Data ingestion: readers for the real file formats, the dataset spec, and graph building."""
