"""fruitfeat: MobileNetV2 features of fruit photos on Spark, reduced with PCA, written as Parquet."""

__version__ = "0.1.0"
