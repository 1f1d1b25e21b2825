"""Generation: the model catalog, request parameters, diffusers pipelines under a memory budget, the job worker."""
