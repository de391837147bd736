"""The engine layer: running a plan (``running``), one scheduler (``scheduler``, with the run's
``barriers``, ``interventions`` and loop copies, ``looping``; time in ``clocks``), the rules it
runs (``semantics``, failure strategies in ``strategies``) and their seam (``runtime``), what a
body sees (``context``), the trace (``trace``), virtual time (``simulation``), typed steps
(``steptypes``) and where bodies run (``executors``: the seam ``base``, ``threads`` with the
output ``capture``, ``virtual``).

Imports the definition layer only; no front-end, no view.
"""
