"""The speed benchmarks: scoring stage by stage against the forward pass (``asfda speed``) and Save to the
next case through the real backend (``asfda speed-loop``)."""
