"""KFP pipelines built from `components/` (the training pipeline arrives with its issue)."""
