"""Models: encoders, predictors (Kalman filter), linear ICA."""
