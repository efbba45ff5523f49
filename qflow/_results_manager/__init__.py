"""Covalent's internal module paths, for code that imports them (its own functional
tests do: ``import covalent._results_manager.results_manager as rm``). Each name here is
the public qflow one."""
