"""Contract suites: every port's behaviour, run over every adapter of it."""
