"""KFP components: one thin wrapper per pipeline stage, each calling one `predmaint` function.

Top-level imports here are stdlib and kfp only; heavy imports go inside component bodies.
The stages arrive with the training-pipeline issue.
"""
