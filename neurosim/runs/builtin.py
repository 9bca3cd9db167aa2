"""Names of the built-in runs, importable without torch: the command line checks its arguments with them."""

#: The default experiment of ``neurosim run``: five permuted digit tasks
#: (:data:`~neurosim.runs.experiment.PERMUTED_DIGITS`).
DEFAULT_EXPERIMENT = "permuted-digits"
#: Its methods: without protection, and with HLOP.
METHODS = ("baseline", "hlop")
#: The built-in simulations without learning (:mod:`neurosim.runs.simulation`).
SIMULATIONS = ("cuba", "izhikevich2003")
