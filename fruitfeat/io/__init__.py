"""Reading and writing: URIs, storage, listing the input, the errors table, run layout and publication."""
