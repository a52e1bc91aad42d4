"""The main job: a multi-agent hyperparameter search (``python -m mabeam demo``)."""

#: Modules every node of the demo imports once, in its zygote: every learner
#: process is forked with scikit-learn loaded instead of importing it (about
#: a second each).
PRELOAD = (
    "mabeam.demo.learners",
    "sklearn.svm",
    "sklearn.neighbors",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.datasets",
)
