"""Compiled simulation loops for the no-gradient path (placeholder: nothing is compiled yet)."""


def try_run_compiled(population, projections, drive, state, probes, keep_output, progress):
    """Run a recurrent population in a compiled loop; ``None`` when the configuration is not supported."""
    return None
