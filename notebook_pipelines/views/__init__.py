"""Views: pictures of a plan (Graphviz), optionally coloured by a trace, and the Gantt chart of a run."""
