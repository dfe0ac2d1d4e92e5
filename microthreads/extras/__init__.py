"""Hooks that make particular third-party libraries cooperate without patching.

Each submodule imports its library only when a function of it is called:
importing ``microthreads`` or ``microthreads.extras`` needs nothing but greenlet.

- ``microthreads.extras.psycopg2``: a wait callback for psycopg2.
"""
