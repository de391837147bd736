"""The engine layer: one scheduler (``scheduler``), the rules it runs (``semantics``), what a
body sees (``context``), the trace (``trace``), virtual time (``simulation``), typed steps
(``steptypes``) and where bodies run (``executors``).

Imports the definition layer only; no front-end, no view.
"""
