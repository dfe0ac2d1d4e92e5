"""Side-by-side benchmarks of microthreads against its peers: `python -m bench`."""
