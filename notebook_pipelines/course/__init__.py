"""Teaching aids: pipeline puzzles (``nbp.puzzle``) and the course's exercises (``nbp.check``),
both checked by simulation."""
