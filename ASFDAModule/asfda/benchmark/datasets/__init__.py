"""The benchmark's first stage: the datasets (reference volumes, acquisition protocols, the i.i.d. and site
builders, any labelled folder) and the source model trained on their source split."""
