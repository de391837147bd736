"""Front-ends: the command line (``cli``) and the IPython magics (``magics``).

They only build definitions and consume traces; nothing here schedules.
"""
