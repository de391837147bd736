"""Teaching aids: pipeline puzzles (``nbp.puzzle``), checked by simulation."""
