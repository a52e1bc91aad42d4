"""The main job: a multi-agent hyperparameter search (``python -m mabeam demo``)."""
