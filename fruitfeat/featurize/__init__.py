"""Image bytes to 1280-d MobileNetV2 features: decoding, the model and its runtimes, the Arrow pandas UDF."""
