"""notespace training: domain adaptation, evaluation and export of clinical-note encoders."""
