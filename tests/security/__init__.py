"""Adversarial tests: one attack per test, each asserting the refusal and the unchanged state."""
