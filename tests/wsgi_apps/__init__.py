"""Applications the WSGI tests serve in subprocesses (python -m microthreads.wsgi, gunicorn)."""
