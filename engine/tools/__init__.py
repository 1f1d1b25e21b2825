"""Tools beside generation: prompt building and enhancing, background removal."""
