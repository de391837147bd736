"""Front-ends: the command line (``cli``), the IPython magics (``magics``), ``trace.pipeline``.

They only build definitions and consume traces; nothing here schedules.
"""
