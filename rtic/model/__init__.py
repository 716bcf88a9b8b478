"""The sector classifier, its evaluation and training, few-shot sectors and the MLflow pyfunc file."""
