"""The benchmark's runs: the arms, preparing the model and the pool's scores once, executing every
(strategy, seed) in its own process, the runner that plans and resumes them, and what run.json records."""
